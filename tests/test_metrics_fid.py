"""VideoFID (talking_faces/metrics/fid.py): torchmetrics' FID on the frames of video clips, with the
FID Inception read from the torch hub cache with weights_only=True.

The weight file is made here: a random init of the FID Inception's architecture (torchvision's
Inception3 with 1008 classes and no auxiliary head has exactly torch-fidelity's keys and shapes;
loading is strict), convolutions He-initialised so the features stay O(1), saved under the
standard file name in a temporary ``$TORCH_HOME/hub/checkpoints``. Nothing here is about the
pretrained network's values, only about the code path that loads and uses it.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from talking_faces.errors import MissingWeightsError, UserError
from talking_faces.metrics.fid import (
    INCEPTION_FILENAME,
    INCEPTION_URL,
    PYTORCH_FID_FILENAME,
    VideoFID,
    inception_weights_path,
    to_uint8,
)


def _random_inception() -> dict[str, torch.Tensor]:
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return net.state_dict()


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``$TORCH_HOME`` whose hub cache holds a random FID Inception under the standard name."""
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(_random_inception(), home / "hub" / "checkpoints" / INCEPTION_FILENAME)
    return home


@pytest.fixture
def weights(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return torch_home / "hub" / "checkpoints" / INCEPTION_FILENAME


def _clips(seed: int, b: int = 2, t: int = 3, size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, size, size, generator=generator)


def test_file_name_and_url_are_torch_fidelitys() -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert INCEPTION_URL == URL_INCEPTION_V3
    assert URL_INCEPTION_V3.rsplit("/", 1)[1] == INCEPTION_FILENAME


@pytest.mark.slow
def test_identical_sets_score_zero(weights: Path) -> None:
    target = _clips(0, b=2, t=2)
    metric = VideoFID()  # the standard 2048-d pool features
    assert metric.weights_path == weights == inception_weights_path()
    assert metric.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert metric.describe()["sha256"] == metric.weights_sha256
    metric.update(target, target)
    assert abs(float(metric.compute())) < 1e-4
    assert metric.compute().dtype == torch.float64
    assert metric.counts() == {"frames": 4, "clips": 2}
    # (one compute only: its 2048x2048 eigenvalue problem is most of this test's time; different
    # sets scoring more is checked on 192-d features below)


def test_closer_frames_score_lower(weights: Path) -> None:
    target = _clips(6, b=2, t=3)
    metric = VideoFID(feature=192)
    scores = []
    for pred in ((target + 0.05 * torch.randn_like(target)).clamp(0, 1), 1 - target):
        metric.reset()
        metric.update(pred, target)
        scores.append(float(metric.compute()))
    assert 1e-4 < scores[0] < scores[1]  # slightly noisy frames are closer than inverted ones


def test_frame_stride_scores_every_kth_frame(weights: Path) -> None:
    target = _clips(1, b=2, t=5)
    pred = target.clone()
    pred[:, 1::2] = 1 - pred[:, 1::2]  # only the odd frames differ
    strided = VideoFID(feature=64, frame_stride=2)
    strided.update(pred, target)
    assert strided.counts() == {"frames": 6, "clips": 2}  # frames 0, 2, 4 of each clip
    assert abs(float(strided.compute())) < 1e-4
    every = VideoFID(feature=64)
    every.update(pred, target)
    assert every.counts() == {"frames": 10, "clips": 2}
    assert float(every.compute()) > 1e-3


def test_counts_accumulate_and_too_few_frames_is_nan(weights: Path) -> None:
    metric = VideoFID(feature=64)
    one = _clips(2, b=1, t=1)
    metric.update(one, one)
    assert metric.compute().isnan()
    metric.update(_clips(3, b=3, t=2), _clips(4, b=3, t=2))
    assert metric.counts() == {"frames": 7, "clips": 4}
    assert float(metric.compute()) > 0
    with pytest.raises(ValueError, match="B,T,3,H,W"):
        metric.update(one, _clips(2, b=1, t=2))


def test_frames_are_rounded_not_truncated() -> None:
    # k / 255 a little below itself, as a resize or a float16 round trip leaves it
    levels = (torch.arange(256, dtype=torch.float32) / 255 - 1e-6).clamp(0, 1)
    assert torch.equal(to_uint8(levels), torch.arange(256, dtype=torch.uint8))
    assert not torch.equal((levels * 255).byte(), torch.arange(256, dtype=torch.uint8))


def test_missing_weights_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    with pytest.raises(MissingWeightsError) as info:
        VideoFID()
    message = str(info.value)
    assert "\n" not in message
    assert str(folder / INCEPTION_FILENAME) in message and INCEPTION_URL in message


def test_pytorch_fid_name_is_found(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / PYTORCH_FID_FILENAME).symlink_to(weights)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert inception_weights_path() == folder / PYTORCH_FID_FILENAME
    assert VideoFID(feature=64).weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()


class _RunsCode:
    """Pickles as a call that writes ``marker``: what an unrestricted ``torch.load`` would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path, str]]:
        return Path.write_text, (self.marker, "code ran")


def test_weights_are_read_with_weights_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    marker = tmp_path / "marker"
    file = folder / INCEPTION_FILENAME
    torch.save({"fc.bias": torch.zeros(1008), "extra": _RunsCode(marker)}, file)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError) as info:
        VideoFID()
    assert "weights_only=True" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()
    torch.load(file, weights_only=False)  # what torch-fidelity's own loading would have done
    assert marker.read_text() == "code ran"


def test_wrong_network_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(nn.Linear(3, 2).state_dict(), folder / INCEPTION_FILENAME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="is not the FID Inception's state dict") as info:
        VideoFID()
    assert "\n" not in str(info.value)


def test_bad_arguments_are_user_errors(weights: Path) -> None:
    with pytest.raises(UserError, match="feature must be one of"):
        VideoFID(feature=100)
    with pytest.raises(UserError, match="frame_stride"):
        VideoFID(frame_stride=0)


# ----------------------------------------------------------------------------- DDP
# 64-d features of 70 frames: a full-rank covariance, so the gap measured is that of the order of
# the float64 sums alone (with fewer frames than features, the near-zero eigenvalues of the
# rank-deficient covariances make FID itself unstable at ~1e-7, whatever the order). One torch
# thread on both sides, so the features are the same bits.
DDP_FEATURE, DDP_CLIPS, DDP_FRAMES = 64, 5, 14


def _score(metric: VideoFID, pred: torch.Tensor, target: torch.Tensor, clips: slice) -> None:
    for i in range(clips.start, clips.stop):  # one clip per update, as batches arrive
        metric.update(pred[i : i + 1], target[i : i + 1])


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.set_num_threads(1)
        data = torch.load(Path(folder) / "clips.pt", weights_only=True)
        metric = VideoFID(feature=DDP_FEATURE, path=data["weights"])
        _score(metric, data["pred"], data["target"], slice(0, 3) if rank == 0 else slice(3, 5))
        value = metric.compute()
        torch.save({"fid": value, **metric.counts()}, Path(folder) / f"result{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.ddp
def test_two_processes_agree_with_one_to_rounding(weights: Path, tmp_path: Path) -> None:
    target = _clips(5, b=DDP_CLIPS, t=DDP_FRAMES, size=16)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    torch.save({"pred": pred, "target": target, "weights": str(weights)}, tmp_path / "clips.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = VideoFID(feature=DDP_FEATURE)
        _score(single, pred, target, slice(0, DDP_CLIPS))
        expected = float(single.compute())
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"result{rank}.pt", weights_only=True)
        assert (result["frames"], result["clips"]) == (DDP_CLIPS * DDP_FRAMES, DDP_CLIPS)
        gap = abs(float(result["fid"]) - expected)
        print(f"FID one process {expected!r}, two {float(result['fid'])!r}, gap {gap:.3g}")
        assert expected > 0 and gap <= 1e-10 * expected

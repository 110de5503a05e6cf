"""Metric values from a 2-process gloo run on CPU equal the single-process values on all data."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from talking_faces.metrics.suite import MetricSuite, Protocol
from talking_faces.nn.syncnet import SyncNet

pytestmark = [pytest.mark.ddp, pytest.mark.slow]

PROTOCOL = {"resolution": 64, "ssim_window": "uniform7", "vshift": 3}


def _landmarks(frames: torch.Tensor) -> torch.Tensor:
    """Deterministic landmark "detector": a grid moved by each frame's mean colour; NaN (failed)
    on dark frames."""
    grid = torch.stack(torch.meshgrid(torch.arange(17.0), torch.arange(4.0), indexing="ij"), -1)
    base = grid.reshape(68, 2) * 3 + 10
    shift = frames.mean((2, 3)) @ torch.tensor([[4.0, 1.0], [1.0, 4.0], [2.0, 2.0]])
    lmk = base + shift[:, None, :]
    return torch.where((frames.mean((1, 2, 3)) < 0.05)[:, None, None], float("nan"), lmk)


def _suite(syncnet_path: Path) -> MetricSuite:
    syncnet = SyncNet(image_size=64)
    syncnet.load_state_dict(torch.load(syncnet_path, weights_only=True))
    return MetricSuite(Protocol(**PROTOCOL), syncnet.eval(), _landmarks, lpips=False)


def _score(suite: MetricSuite, batch: dict[str, torch.Tensor], clips: slice) -> None:
    # two updates per process, so states accumulate locally before they are reduced
    for part in (slice(clips.start, clips.start + 1), slice(clips.start + 1, clips.stop)):
        if part.start < part.stop:
            suite.update(
                batch["pred"][part],
                batch["target"][part],
                batch["waveform"][part],
                batch["landmarks"][part],
                batch["valid"][part],
            )


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    folder_path = Path(folder)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.set_num_threads(1)
        batch = torch.load(folder_path / "batch.pt", weights_only=True)
        suite = _suite(folder_path / "syncnet.pt")
        clips = slice(0, 3) if rank == 0 else slice(3, 5)  # uneven split on purpose
        _score(suite, batch, clips)
        result = suite.compute()
        torch.save(result, folder_path / f"result{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_metrics_equal_single_process(tmp_path: Path) -> None:
    torch.manual_seed(0)
    n, t, size = 5, 8, 72
    target = (0.3 + 0.6 * torch.rand(n, t, 3, size, size)).clamp(0, 1)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    pred[3, 2] = 0.0  # a failed landmark detection on the second process's data
    landmarks = torch.stack([_landmarks(clip) for clip in target])
    valid = torch.ones(n, t, dtype=torch.bool)
    valid[0, 1] = False
    batch = {
        "pred": pred,
        "target": target,
        "waveform": 0.2 * torch.randn(n, t * 640),
        "landmarks": landmarks,
        "valid": valid,
    }
    torch.save(batch, tmp_path / "batch.pt")
    torch.save(SyncNet(image_size=64).state_dict(), tmp_path / "syncnet.pt")

    single = _suite(tmp_path / "syncnet.pt")
    _score(single, batch, slice(0, n))
    expected = single.compute()

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"result{rank}.pt", weights_only=True)
        assert set(result) == set(expected)
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
    assert expected["clips"] == n and expected["lmd_frames_failed"] == 2

"""The evaluation experts: SyncNet and landmark regressor, their layout, training and export.

Unit checks of the networks and losses on tensors the tests build, then both experts trained
through ``talking-faces fit experiments/experts/*.yaml`` on a small synthetic corpus (see
tests/expert_data.py): they must learn (well above chance / well below the mean-shape error), be
exported to ``PREP/experts/<name>.ckpt`` with a matching sha256, and load back unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from expert_data import last_value, read_metrics

from talking_faces.data import TalkingFaceDataModule
from talking_faces.errors import UserError
from talking_faces.experts import (
    EXPERTS,
    LandmarkExpert,
    LandmarkRegressor,
    ScalableSyncNet,
    SyncNetExpert,
)
from talking_faces.experts.landmarks import MOUTH, _augment, inference_network
from talking_faces.experts.syncnet import balanced_accuracy
from talking_faces.metrics.sync import lip_sync_errors, sync_distances, sync_windows
from talking_faces.nn.syncnet import SyncNet
from talking_faces.registry import load_expert
from talking_faces.utils.io import sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------- networks
def test_scalable_syncnet_at_full_width_is_the_public_network() -> None:
    ours, public = ScalableSyncNet(), SyncNet()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in public.state_dict().items()
    }
    torch.manual_seed(0)
    public.eval()
    ours.load_state_dict(public.state_dict(), strict=True)
    ours.eval()
    video = torch.rand(2, 3, 5, 224, 224) * 255
    mfcc = torch.randn(2, 1, 13, 20) * 10
    with torch.no_grad():
        assert torch.equal(ours.forward_lip(video), public.forward_lip(video))
        assert torch.equal(ours.forward_aud(mfcc), public.forward_aud(mfcc))


def test_small_syncnet_runs_inside_the_lse_metric() -> None:
    net = ScalableSyncNet(
        width=0.25, embedding_dim=32, fc_hidden=32, image_size=64, normalize=True, lift=2.0
    ).eval()
    frames = torch.rand(2, 12, 3, 64, 64)
    waveform = torch.randn(2, 12 * 640) * 0.1
    rows = lip_sync_errors(net, frames, waveform, vshift=3, mode="crop", crop_box=(16, 32, 48, 64))
    assert rows.shape == (2, 3)
    assert torch.isfinite(rows).all()
    # unit embeddings lifted by 2: real pairs are at most 2 apart, LSE's zero padding sqrt(5)
    video, audio = sync_windows(frames[0], waveform[0], 64, "crop", (16, 32, 48, 64))
    with torch.no_grad():
        d = sync_distances(net.forward_lip(video.contiguous()), net.forward_aud(audio), vshift=3)
    n = d.shape[0]
    for i in range(n):
        for k in range(7):
            j = i + k - 3
            if 0 <= j < n:
                assert d[i, k] <= 2.0 + 1e-4
            else:
                assert d[i, k] == pytest.approx(5**0.5, abs=1e-4)


def test_expert_training_inputs_are_what_the_lse_metric_feeds_it() -> None:
    """Training embeds whole clips; that must equal the metric's per-window path exactly."""
    torch.manual_seed(0)
    expert = SyncNetExpert(image_size=64, input_size=56, width=0.125, embedding_dim=16).eval()
    batch = {"frames": torch.rand(2, 11, 3, 64, 64), "waveform": torch.randn(2, 11 * 640) * 0.1}
    clips, audio = expert.inputs(batch)
    with torch.no_grad():
        v, a = expert.embed(clips, audio)
        for b in range(2):
            box = expert.crop_box_pixels(64, 64)
            video_w, audio_w = sync_windows(
                batch["frames"][b], batch["waveform"][b], 56, "crop", box, "bgr"
            )
            assert torch.equal(audio[b], audio_w)
            assert torch.allclose(v[b], expert.net.forward_lip(video_w.contiguous()), atol=1e-5)
            assert torch.allclose(a[b], expert.net.forward_aud(audio_w), atol=1e-5)


def test_balanced_accuracy_is_the_best_threshold() -> None:
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(50, generator=gen)
    neg = torch.randn(80, generator=gen) + 1.5
    acc, threshold = balanced_accuracy(pos, neg)
    best = max(
        ((pos <= t).float().mean() + (neg > t).float().mean()) / 2 for t in torch.cat([pos, neg])
    )
    assert float(acc) == pytest.approx(float(best), abs=1e-6)
    at = ((pos <= threshold).float().mean() + (neg > threshold).float().mean()) / 2
    assert float(at) == pytest.approx(float(acc), abs=1e-6)


def test_contrastive_loss_rewards_aligned_embeddings() -> None:
    expert = SyncNetExpert(image_size=64, max_offset=4)
    gen = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(3, 10, 16, generator=gen), dim=-1)
    with torch.no_grad():
        aligned, acc_aligned = expert.contrastive_loss(audio.clone(), audio)
        shifted, acc_shifted = expert.contrastive_loss(audio.roll(2, dims=1), audio)
    assert float(acc_aligned) == 1.0
    assert float(acc_shifted) < 0.5
    assert float(aligned) < float(shifted)


def test_untrained_landmark_regressor_predicts_the_crop_centre() -> None:
    net = LandmarkRegressor(width=8).eval()
    with torch.no_grad():
        points = net(torch.rand(2, 3, 64, 96))
    assert points.shape == (2, 68, 2)
    assert torch.allclose(points[..., 0], torch.full((2, 68), 47.5), atol=1e-4)
    assert torch.allclose(points[..., 1], torch.full((2, 68), 31.5), atol=1e-4)


def test_augmentation_moves_landmarks_with_the_pixels() -> None:
    torch.manual_seed(0)
    images = torch.zeros(8, 3, 64, 64)
    points = torch.tensor([[[20.0, 30.0], [44.0, 18.0]]]).repeat(8, 1, 1)
    for x, y in points[0].long().tolist():
        images[:, :, y - 1 : y + 2, x - 1 : x + 2] = 1.0
    out, moved = _augment(images, points)
    for i in range(8):
        for p in range(2):
            x, y = moved[i, p]
            patch = out[i, 0, int(y) - 1 : int(y) + 3, int(x) - 1 : int(x) + 3]
            background = out[i, 0, :8, :8].mean()
            assert patch.mean() > background + 0.25, (i, p, moved[i, p])


def test_experts_registry_and_configs_load() -> None:
    from talking_faces.training.runconfig import load_config

    root = Path(__file__).resolve().parents[1]
    for name in EXPERTS:
        cfg = load_config([root / "experiments" / "experts" / f"{name}.yaml"], ["data.root=x"])
        assert cfg.model.name == name
        assert EXPERTS[name](cfg.model, image_size=64).config.name == name


# ------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_syncnet_expert_learns_and_is_exported(trained: Path) -> None:
    run = trained.parent / "runs" / "syncnet"
    acc = last_value(run, "val/acc")
    # chance is 0.5; the full-size run in benchmarks/README.md reaches >= 0.9
    assert acc > 0.7, acc
    losses = [float(r["train/loss"]) for r in read_metrics(run) if r.get("train/loss")]
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3]), losses

    path = trained / "experts" / "syncnet.ckpt"
    digest = (trained / "experts" / "syncnet.ckpt.sha256").read_text().split()[0]
    assert digest == sha256_file(path)
    expert, sha = load_expert(path, "syncnet")
    assert sha == digest
    assert isinstance(expert, SyncNetExpert)
    best = next((run / "checkpoints").glob("best-*.ckpt"))
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in expert.state_dict().items():
        assert torch.equal(value, state[key]), key
    with pytest.raises(UserError, match="not 'landmarks'"):
        load_expert(path, "landmarks")
    # the same weights exported again have the same sha256 (results name experts by it)
    from talking_faces.experts.base import export_checkpoint

    source = torch.load(best, map_location="cpu", weights_only=True)
    again = trained.parent / "again" / "syncnet.ckpt"
    again.parent.mkdir(exist_ok=True)
    assert export_checkpoint(source, again) == digest


@pytest.mark.slow
def test_landmark_expert_tracks_the_mouth(trained: Path) -> None:
    expert, _ = load_expert(trained / "experts" / "landmarks.ckpt", "landmarks")
    assert isinstance(expert, LandmarkExpert)
    run = trained.parent / "runs" / "landmarks"
    assert last_value(run, "val/mouth_px") < 2.0

    dm = TalkingFaceDataModule(str(trained), num_frames=16, batch_size=4, identity="first")
    dm.setup("fit")
    train_points = torch.cat([b["landmarks"].flatten(0, 1) for b in dm.train_dataloader()])
    mean_shape = train_points.mean(0)
    ours, baseline, opening, true_opening = [], [], [], []
    for batch in dm.val_dataloader():
        truth = batch["landmarks"].flatten(0, 1)
        pred = expert.predict_landmarks(batch["frames"].flatten(0, 1))
        ours.append((pred - truth)[:, MOUTH].norm(dim=-1).mean(-1))
        baseline.append((mean_shape - truth)[:, MOUTH].norm(dim=-1).mean(-1))
        # inner-lip gap (points 62 and 66): what LMD mostly measures on talking mouths
        opening.append((pred[:, 66] - pred[:, 62]).norm(dim=-1))
        true_opening.append((truth[:, 66] - truth[:, 62]).norm(dim=-1))
    ours_px, mean_px = float(torch.cat(ours).mean()), float(torch.cat(baseline).mean())
    assert ours_px < 0.75 * mean_px, (ours_px, mean_px)
    corr = torch.corrcoef(torch.stack([torch.cat(opening), torch.cat(true_opening)]))[0, 1]
    assert corr > 0.6, float(corr)


def test_expert_predicts_with_its_folded_channels_last_copy(trained: Path) -> None:
    """In eval mode predict_landmarks runs a copy with each batch norm folded into its convolution
    (channels-last): the trained expert's points within float rounding of the network's own, and
    always from the current weights (fit's validation calls it between optimizer steps)."""
    expert, _ = load_expert(trained / "experts" / "landmarks.ckpt", "landmarks")
    frames = torch.rand(6, 3, *([expert.config.image_size] * 2))
    expert.eval()
    with torch.no_grad():
        plain = expert.net(frames)
        folded = inference_network(expert.net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert (expert.predict_landmarks(frames) - plain).abs().max() < 1e-3
        assert not torch.equal(expert.predict_landmarks(frames), plain)  # the copy ran
        expert.net.stem[0][0].weight.mul_(1.5)  # an optimizer step, in effect
        moved = expert.net(frames)
        assert (expert.predict_landmarks(frames) - moved).abs().max() < 1e-3
        assert (moved - plain).abs().max() > 0.01
        expert.train()  # training mode: the network itself (batch statistics)
        assert torch.equal(expert.predict_landmarks(frames), expert.net(frames))


def test_load_expert_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_expert(tmp_path / "none.ckpt")
    bogus = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"config": {"name": "ldm"}}}, bogus)
    with pytest.raises(UserError, match="not an expert checkpoint"):
        load_expert(bogus)
    np.save(tmp_path / "junk.npy", np.zeros(3))
    with pytest.raises(UserError, match="cannot read"):
        load_expert(tmp_path / "junk.npy")

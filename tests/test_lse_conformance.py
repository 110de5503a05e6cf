"""LSE-D / LSE-C / AV offset equal Wav2Lip's LRS scoring script on real decoded clips.

The reference below is written from Wav2Lip's ``evaluation/scores_LSE/
SyncNetInstance_calc_scores.py`` (``SyncNetInstance.evaluate`` with ``calc_pdist``), which is
joonson/syncnet_python's ``SyncNetInstance.evaluate`` plus ``cv2.resize(frame, (224, 224))``, step
by step: BGR uint8 frames resized by OpenCV, stacked to ``1,3,T,224,224`` floats; the 16-bit
samples through ``python_speech_features.mfcc``; ``min(T, S // 640) - 5`` windows of 5 frames and
20 MFCC columns embedded in batches of 20; the audio embeddings padded with ``vshift`` zero rows;
``pairwise_distance``; the mean over windows; min, median, ``vshift - argmin``. It runs with a
SyncNet of the public architecture whose weights the test makes (``syncnet_v2.model`` layout),
on clips of the synthetic corpus decoded with PyAV (frames as RGB 8-bit, audio resampled by
FFmpeg to 16 kHz mono 16-bit, as the script's ``ffmpeg`` calls give them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import python_speech_features
import torch
from scipy.io import wavfile

from talking_faces.cli.main import main
from talking_faces.data import dataset
from talking_faces.evaluation.protocols import load_protocol_file
from talking_faces.evaluation.scorers import build_scorers
from talking_faces.metrics import MetricSuite
from talking_faces.metrics.sync import sync_windows
from talking_faces.nn.syncnet import SyncNet, load_syncnet

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TOLERANCE = 1e-4


# ------------------------------------------------------------------------------ the reference
def reference_inputs(frames_bgr: list[np.ndarray], audio: np.ndarray):
    """The script's ``imtv`` (``1,3,T,224,224``) and ``cct`` (``1,1,13,N``) tensors."""
    images = [cv2.resize(img, (224, 224)) for img in frames_bgr]
    im = np.transpose(np.stack(images, axis=3)[None], (0, 3, 4, 1, 2))
    imtv = torch.from_numpy(im.astype(float)).float()
    columns = zip(*python_speech_features.mfcc(audio, 16000), strict=True)  # coefficients x time
    mfcc = np.stack([np.array(row) for row in columns])
    cct = torch.from_numpy(mfcc[None, None].astype(float)).float()
    return imtv, cct


def calc_pdist(feat1: torch.Tensor, feat2: torch.Tensor, vshift: int) -> list[torch.Tensor]:
    win_size = vshift * 2 + 1
    feat2p = torch.nn.functional.pad(feat2, (0, 0, vshift, vshift))
    return [
        torch.nn.functional.pairwise_distance(
            feat1[[i], :].repeat(win_size, 1), feat2p[i : i + win_size, :]
        )
        for i in range(len(feat1))
    ]


@torch.no_grad()
def reference_lse(
    syncnet: SyncNet,
    frames_bgr: list[np.ndarray],
    audio: np.ndarray,
    vshift: int = 15,
    batch_size: int = 20,
) -> dict[str, float]:
    """``SyncNetInstance.evaluate``: ``offset``, ``conf`` (LSE-C) and ``minval`` (LSE-D)."""
    imtv, cct = reference_inputs(frames_bgr, audio)
    min_length = min(len(frames_bgr), math.floor(len(audio) / 640))
    lastframe = min_length - 5
    im_feat, cc_feat = [], []
    for i in range(0, lastframe, batch_size):
        frames = range(i, min(lastframe, i + batch_size))
        im_in = torch.cat([imtv[:, :, v : v + 5, :, :] for v in frames], 0)
        im_feat.append(syncnet.forward_lip(im_in))
        cc_in = torch.cat([cct[:, :, :, v * 4 : v * 4 + 20] for v in frames], 0)
        cc_feat.append(syncnet.forward_aud(cc_in))
    dists = calc_pdist(torch.cat(im_feat, 0), torch.cat(cc_feat, 0), vshift)
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    return {
        "lse_d": float(minval),
        "lse_c": float(torch.median(mdist) - minval),
        "offset": int(vshift - minidx),
    }


# ------------------------------------------------------------------------------ decoded clips
def decode(video: Path, audio: Path) -> tuple[np.ndarray, np.ndarray]:
    """``T,H,W,3`` uint8 RGB frames of ``video`` and int16 16 kHz mono samples of ``audio``."""
    with av.open(str(video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    chunks = []
    with av.open(str(audio)) as container:
        for frame in container.decode(audio=0):
            chunks += [r.to_ndarray() for r in resampler.resample(frame)]
    chunks += [r.to_ndarray() for r in resampler.resample(None)]
    return frames, np.concatenate(chunks, axis=1)[0].astype(np.int16)


@pytest.fixture(scope="module")
def clips(synthetic_grid_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An LRW-layout mp4 at 256 px (H.264 + AAC 48 kHz; 256 -> 224 shrinks) and a GRID-layout
    clip at 128 px (MPEG-1 + 25 kHz WAV; 128 -> 224 enlarges), decoded."""
    raw = tmp_path_factory.mktemp("lrw") / "raw"
    args = ["synth", str(raw), "--layout", "lrw", "--speakers", "1", "--clips", "1"]
    assert main([*args, "--size", "256"]) == 0
    mp4 = sorted(raw.rglob("*.mp4"))[0]
    mpg = sorted(synthetic_grid_raw.rglob("*.mpg"))[0]
    return {"lrw-256": decode(mp4, mp4), "grid-128": decode(mpg, mpg.with_suffix(".wav"))}


@pytest.fixture(scope="module")
def public_syncnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``syncnet_v2.model`` state dict of the public architecture, with non-trivial batch-norm
    statistics so that eval-mode normalisation matters."""
    torch.manual_seed(0)
    net = SyncNet()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("weights") / "syncnet_v2.model"
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.parametrize("clip", ["lrw-256", "grid-128"])
def test_lse_equals_wav2lip_script_on_decoded_clips(
    clips: dict, public_syncnet: Path, clip: str, tmp_path: Path
) -> None:
    rgb, pcm = clips[clip]
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in rgb]
    syncnet = load_syncnet(public_syncnet)
    frames = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    wave = torch.from_numpy(pcm.astype(np.float32) / 32768.0)

    # the same pixels and MFCC reach SyncNet
    imtv, cct = reference_inputs(bgr, pcm)
    video, audio = sync_windows(frames, wave, 224, "full", None, "bgr")
    n = min(len(bgr), len(pcm) // 640) - 5
    assert video.shape[0] == audio.shape[0] == n
    for i in (0, n // 2, n - 1):
        assert torch.equal(video[i], imtv[0, :, i : i + 5])
        torch.testing.assert_close(audio[i, 0], cct[0, 0, :, 4 * i : 4 * i + 20])

    # and the scores of the protocol's metric suite are the script's
    scorers = build_scorers("wav2lip-lse-only", str(tmp_path), syncnet_public=str(public_syncnet))
    assert scorers.protocol.lse_mode == "full" and scorers.protocol.lse_channel_order == "bgr"
    assert scorers.protocol.vshift == 15
    # `wav2lip-lse` (LSE the same way, beside the other metrics) scores LSE alike
    full = load_protocol_file("wav2lip-lse")
    for key in ("syncnet", "lse_mode", "lse_channel_order", "vshift"):
        assert full[key] == load_protocol_file("wav2lip-lse-only")[key], key
    suite = MetricSuite(scorers.protocol, syncnet=scorers.syncnet, lpips=False)
    suite.update(frames[None], frames[None], wave[None])
    ours = suite.per_clip()[0]
    ref = reference_lse(syncnet, bgr, pcm)
    assert ours["lse_offset"] == ref["offset"]
    assert abs(ours["lse_d"] - ref["lse_d"]) <= TOLERANCE
    assert abs(ours["lse_c"] - ref["lse_c"]) <= TOLERANCE


def test_wav2lip_lse_only_protocol_needs_only_the_public_syncnet(
    prepared_grid: Path, public_syncnet: Path, tmp_path: Path
) -> None:
    """No landmark expert, no LPIPS weights: evaluate scores LSE (= the script on the same frames
    and 16-bit audio) and the network-free PSNR/SSIM, and records that nothing else scored."""
    out = tmp_path / "gt.json"
    argv = ["evaluate", "--baseline", "ground-truth", "--data", str(prepared_grid)]
    argv += ["--protocol", "wav2lip-lse-only", "--syncnet-public", str(public_syncnet)]
    assert main([*argv, "--limit", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results["metrics"]) == {
        "psnr",
        "ssim",
        "lse_d",
        "lse_c",
        "lse_offset",
        "lse_abs_offset",
        "clips",
    }
    protocol = results["protocol"]
    assert protocol["landmarks"] == {"kind": "none"} and protocol["lmd_reference"] is None
    assert protocol["syncnet"]["kind"] == "public" and protocol["lpips"] is False
    assert set(results["experts"]) == {"syncnet"}

    # the scored pair's real frames and its audio as a 16-bit WAV, through the script
    prepared = dataset.PreparedDataset.load(prepared_grid)
    pair = dataset.TestPairDataset(prepared, dataset.WindowConfig())[0]
    rgb = pair["frames"].permute(0, 2, 3, 1).numpy()
    pcm = np.clip(np.round(pair["waveform"].double().numpy() * 32768), -32768, 32767)
    wavfile.write(tmp_path / "audio.wav", 16000, pcm.astype(np.int16))
    _, pcm16 = wavfile.read(tmp_path / "audio.wav")
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in rgb]
    ref = reference_lse(load_syncnet(public_syncnet), bgr, pcm16)
    assert results["metrics"]["lse_offset"] == ref["offset"]
    assert abs(results["metrics"]["lse_d"] - ref["lse_d"]) <= TOLERANCE
    assert abs(results["metrics"]["lse_c"] - ref["lse_c"]) <= TOLERANCE

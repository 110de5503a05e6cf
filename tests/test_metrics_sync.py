"""LSE-D, LSE-C and AV offset against a brute-force computation; SyncNet's public weight names."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import python_speech_features
import torch
from scipy.io import wavfile

from talking_faces.errors import MissingWeightsError, UserError
from talking_faces.metrics.sync import (
    LipSyncError,
    SyncConfidence,
    SyncDistance,
    lip_sync_error,
    lse_from_distances,
    sync_distances,
    sync_windows,
    syncnet_mfcc,
)
from talking_faces.nn.syncnet import SyncNet, load_syncnet


def brute_force_lse(video: np.ndarray, audio: np.ndarray, vshift: int) -> dict[str, float]:
    """The definition of docs/metrics.md written out with explicit loops."""
    n, d = video.shape
    mdist = []
    for k in range(2 * vshift + 1):
        total = 0.0
        for i in range(n):
            j = i + k - vshift
            a = audio[j] if 0 <= j < n else np.zeros(d)
            total += math.sqrt(float(np.sum((video[i] - a + 1e-6) ** 2)))
        mdist.append(total / n)
    best = min(range(len(mdist)), key=lambda k: mdist[k])
    median = sorted(mdist)[vshift]  # 2*vshift+1 values: the middle one
    return {"lse_d": mdist[best], "lse_c": median - mdist[best], "offset": vshift - best}


@pytest.mark.parametrize(("n", "vshift"), [(9, 3), (14, 15)])
def test_lse_matches_brute_force(n: int, vshift: int) -> None:
    rng = np.random.default_rng(n)
    video = rng.standard_normal((n, 6))
    audio = video + 0.8 * rng.standard_normal((n, 6))
    dists = sync_distances(torch.from_numpy(video), torch.from_numpy(audio), vshift)
    assert dists.shape == (n, 2 * vshift + 1)
    ours = lse_from_distances(dists)
    ref = brute_force_lse(video, audio, vshift)
    assert ours["offset"] == ref["offset"]
    assert ours["lse_d"] == pytest.approx(ref["lse_d"], abs=1e-9)
    assert ours["lse_c"] == pytest.approx(ref["lse_c"], abs=1e-9)
    # one entry checked on its own: d[i, k] for i=2, k=vshift+1 compares v_2 with a_3
    expected = np.sqrt(((video[2] - audio[3] + 1e-6) ** 2).sum())
    assert float(dists[2, vshift + 1]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("shift", [3, -3, 0])
def test_offset_sign_follows_syncnet_python(shift: int) -> None:
    """audio[j] = video[j + shift] (video lags audio by `shift` frames) -> offset == +shift."""
    rng = np.random.default_rng(7)
    n, vshift = 30, 15
    video = rng.standard_normal((n, 8))
    audio = rng.standard_normal((n, 8))
    for j in range(n):
        if 0 <= j + shift < n:
            audio[j] = video[j + shift]
    scores = lse_from_distances(sync_distances(torch.from_numpy(video), torch.from_numpy(audio)))
    assert scores["offset"] == shift
    assert scores["lse_c"] > 0
    assert scores == pytest.approx(brute_force_lse(video, audio, vshift))


def test_syncnet_mfcc_matches_python_speech_features_on_a_wav(tmp_path: Path) -> None:
    """Same numbers as syncnet_python: int16 WAV read back, python_speech_features.mfcc."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(16000)
    pcm = np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)
    wavfile.write(tmp_path / "a.wav", 16000, pcm)
    rate, audio = wavfile.read(tmp_path / "a.wav")
    reference = python_speech_features.mfcc(audio, rate).T
    ours = syncnet_mfcc(torch.from_numpy(audio.astype(np.float32) / 32768.0))
    assert ours.dtype == torch.float32 and ours.shape == (13, reference.shape[1])
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-5, atol=1e-4)


def test_sync_windows_layout() -> None:
    torch.manual_seed(0)
    frames = torch.rand(12, 3, 32, 32)
    wave = 0.1 * torch.randn(12 * 640)
    video, audio = sync_windows(frames, wave, image_size=32)
    # min_len = 12 -> windows i = 0..6 (range(min_len - 5), as syncnet_python)
    assert video.shape == (7, 3, 5, 32, 32) and audio.shape == (7, 1, 13, 20)
    pixels = (frames * 255).round()
    torch.testing.assert_close(video[4, :, 2], pixels[6].flip(0))  # BGR, frame i + 2
    mfcc = syncnet_mfcc(wave)
    torch.testing.assert_close(audio[5, 0], mfcc[:, 20:40])

    # audio shorter than the video: min_len follows the audio
    video, audio = sync_windows(frames, wave[: 9 * 640], image_size=32, channel_order="rgb")
    assert video.shape[0] == audio.shape[0] == 4
    torch.testing.assert_close(video[0, :, 0], pixels[0])

    # crop mode: the default box is the lower-centre square of the frame
    video, _ = sync_windows(frames, wave, image_size=16, mode="crop", channel_order="rgb")
    torch.testing.assert_close(video[0, :, 0], pixels[0, :, 16:32, 8:24])
    video, _ = sync_windows(frames, wave, 8, "crop", crop_box=(0, 0, 8, 8), channel_order="rgb")
    torch.testing.assert_close(video[1, :, 0], pixels[1, :, :8, :8])

    with pytest.raises(ValueError, match="too short"):
        sync_windows(frames[:5], wave, image_size=32)


@pytest.fixture(scope="module")
def tiny_syncnet() -> SyncNet:
    torch.manual_seed(0)
    return SyncNet(image_size=64).eval()


def test_lip_sync_error_end_to_end(tiny_syncnet: SyncNet) -> None:
    """Frames and audio -> windows -> embeddings -> brute-force LSE; the metric averages clips."""
    torch.manual_seed(1)
    frames = torch.rand(3, 11, 3, 48, 48)
    waves = 0.2 * torch.randn(3, 11 * 640)
    expected = []
    for f, w in zip(frames, waves, strict=True):
        video, audio = sync_windows(f, w, image_size=64)
        with torch.no_grad():
            v, a = tiny_syncnet.forward_lip(video), tiny_syncnet.forward_aud(audio)
        expected.append(brute_force_lse(v.double().numpy(), a.double().numpy(), 4))
    scores = lip_sync_error(tiny_syncnet, frames[0], waves[0], vshift=4, batch_size=4)
    assert scores["offset"] == expected[0]["offset"]
    assert scores["lse_d"] == pytest.approx(expected[0]["lse_d"], rel=1e-5)
    assert scores["lse_c"] == pytest.approx(expected[0]["lse_c"], abs=1e-4)

    # windows of different clips share batches (batch_size 4 does not divide 6 windows a clip)
    metric = LipSyncError(tiny_syncnet, vshift=4, batch_size=4)
    metric.update(frames[:2], waves[:2])
    metric.update(frames[2:], waves[2:])
    out = metric.compute()
    assert float(out["lse_d"]) == pytest.approx(np.mean([e["lse_d"] for e in expected]), rel=1e-5)
    assert float(out["lse_c"]) == pytest.approx(np.mean([e["lse_c"] for e in expected]), abs=1e-4)
    assert float(out["offset"]) == pytest.approx(np.mean([e["offset"] for e in expected]))

    distance, confidence = (
        SyncDistance(tiny_syncnet, vshift=4),
        SyncConfidence(tiny_syncnet, vshift=4),
    )
    for m in (distance, confidence):
        m.update(frames[2:], waves[2:])
    assert float(distance.compute()) == pytest.approx(expected[2]["lse_d"], rel=1e-5)
    assert float(confidence.compute()) == pytest.approx(expected[2]["lse_c"], abs=1e-4)
    assert SyncDistance.higher_is_better is False and SyncConfidence.higher_is_better is True
    assert tiny_syncnet.training is False


# ----------------------------------------------------------------------------------------------
# SyncNet and the public syncnet_v2.model names (joonson/syncnet_python, SyncNetModel.py)

PUBLIC_SHAPES = {
    "netcnnaud.0.weight": (64, 1, 3, 3),
    "netcnnaud.1.running_var": (64,),
    "netcnnaud.4.weight": (192, 64, 3, 3),
    "netcnnaud.8.weight": (384, 192, 3, 3),
    "netcnnaud.11.weight": (256, 384, 3, 3),
    "netcnnaud.14.weight": (256, 256, 3, 3),
    "netcnnaud.18.weight": (512, 256, 5, 4),
    "netcnnaud.19.running_mean": (512,),
    "netfcaud.0.weight": (512, 512),
    "netfcaud.1.weight": (512,),
    "netfcaud.3.weight": (1024, 512),
    "netfcaud.3.bias": (1024,),
    "netcnnlip.0.weight": (96, 3, 5, 7, 7),
    "netcnnlip.4.weight": (256, 96, 1, 5, 5),
    "netcnnlip.8.weight": (256, 256, 1, 3, 3),
    "netcnnlip.11.weight": (256, 256, 1, 3, 3),
    "netcnnlip.14.weight": (256, 256, 1, 3, 3),
    "netcnnlip.18.weight": (512, 256, 1, 6, 6),
    "netcnnlip.19.bias": (512,),
    "netfclip.0.weight": (512, 512),
    "netfclip.3.weight": (1024, 512),
}


def public_key_set() -> set[str]:
    """Every key of syncnet_v2.model: conv/linear weight+bias and BN weight, bias, running stats."""
    keys = set()
    layout = {
        "netcnnaud": ([0, 4, 8, 11, 14, 18], [1, 5, 9, 12, 15, 19]),
        "netcnnlip": ([0, 4, 8, 11, 14, 18], [1, 5, 9, 12, 15, 19]),
        "netfcaud": ([0, 3], [1]),
        "netfclip": ([0, 3], [1]),
    }
    for name, (weighted, norms) in layout.items():
        for i in weighted:
            keys |= {f"{name}.{i}.weight", f"{name}.{i}.bias"}
        for i in norms:
            keys |= {f"{name}.{i}.{p}" for p in ("weight", "bias", "running_mean", "running_var")}
            keys.add(f"{name}.{i}.num_batches_tracked")
    return keys


def test_syncnet_state_dict_has_the_public_names_and_shapes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = SyncNet()
    state = net.state_dict()
    assert set(state) == public_key_set()
    for key, shape in PUBLIC_SHAPES.items():
        assert tuple(state[key].shape) == shape, key

    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path)
    loaded = load_syncnet(path)
    assert loaded.training is False
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[key])

    # files written before BatchNorm counted batches lack only those counters
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, path)
    load_syncnet(path)

    # the same names at another image size: loads for that size only
    small = SyncNet(image_size=96)
    torch.save(small.state_dict(), tmp_path / "expert.pt")
    load_syncnet(tmp_path / "expert.pt", image_size=96)
    with pytest.raises(UserError, match="image_size=224"):
        load_syncnet(tmp_path / "expert.pt")

    renamed = {k.replace("netcnnlip", "lip"): v for k, v in state.items()}
    torch.save(renamed, path)
    with pytest.raises(UserError, match="public names"):
        load_syncnet(path)


def test_missing_syncnet_weights_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALKING_FACES_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(MissingWeightsError) as err:
        load_syncnet()
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "weights" / "syncnet_v2.model") in message
    assert str(tmp_path / "weights") in message

    monkeypatch.delenv("TALKING_FACES_WEIGHTS")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(MissingWeightsError) as err:
        load_syncnet()
    assert str(tmp_path / "home" / ".cache" / "talking_faces" / "weights") in str(err.value)

    (tmp_path / "model.pkl").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="state dict"):
        load_syncnet(tmp_path / "model.pkl")


def test_syncnet_embeds_windows_at_small_sizes() -> None:
    for size in (64, 96, 112):
        net = SyncNet(image_size=size).eval()
        with torch.no_grad():
            assert net.forward_lip(torch.zeros(2, 3, 5, size, size)).shape == (2, 1024)
    with pytest.raises(ValueError, match="96x96"):
        net = SyncNet(image_size=96)
        net.forward_lip(torch.zeros(1, 3, 5, 64, 64))

"""The authors' audio recipes as prepared features: davs' MATLAB MFCC, ldm's zero-padded wave.

``mfcc_davs`` is checked against a literal transcription, here, of the MATLAB the davs authors
ran (``preprocess/savemfcc.m`` -> ``runmfcc.m`` -> ``mfcc.m``, ``trifbank.m``, ``vec2frames.m``:
loops over frames, filters and coefficients in MATLAB's 1-based arithmetic) and against known
properties (band edges, partition of unity, the lifter, c0 alone carrying the level);
``zero_waveform`` windows against the ldm authors' ``load_audio`` steps (``np.insert`` 1,965 zeros,
``python_speech_features.mfcc``, ``mfcc[(ind - 3) * 4 : (ind + 4) * 4, 1:]``). Then ``prepare``
(conftest's ``prepared_grid``, the synthetic corpus) stores both and records them in
``meta.json``; the datasets and ``generate`` give the stated windows; a dataset written without
them loads for the old features and refuses the new ones in one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import python_speech_features
from litdata import StreamingDataset

from talking_faces.data import TalkingFaceDataModule
from talking_faces.data.clips import ProcessedClip, RawClip
from talking_faces.data.dataset import (
    ClipWindowDataset,
    PreparedDataset,
    TestPairDataset,
    WindowConfig,
    audio_windows,
    clip_items,
    select_features,
)
from talking_faces.data.prepare import audio
from talking_faces.data.prepare import writer as W
from talking_faces.data.prepare.pipeline import PrepareOptions, write_dataset
from talking_faces.errors import UserError
from talking_faces.inference.generate import check_audio_params, speech_features

# ------------------------------------------------------------------ the MATLAB, transcribed


def matlab_mfcc(speech: np.ndarray) -> np.ndarray:
    """``runmfcc(speech, opt)`` with savemfcc.m's ``opt``, statement by statement; (13, N)."""
    fs, tw, ts, alpha, r, m_filters, n_cep, lift = 16000, 25, 10, 0.97, (300, 3700), 13, 13, 22
    speech = np.asarray(speech, np.float64).copy()
    if np.max(np.abs(speech)) <= 1:
        speech = speech * 2**15
    nw = round(1e-3 * tw * fs)
    ns = round(1e-3 * ts * fs)
    nfft = 2 ** math.ceil(math.log2(nw))
    k_bins = nfft // 2 + 1
    # filter([1 -alpha], 1, speech)
    emph = np.empty_like(speech)
    emph[0] = speech[0]
    for i in range(1, len(speech)):
        emph[i] = speech[i] - alpha * speech[i - 1]
    # vec2frames(speech, Nw, Ns, 'cols', hamming, false): M = floor((L - Nw) / Ns + 1) columns
    count = math.floor((len(emph) - nw) / ns + 1)
    window = [0.54 - 0.46 * math.cos(2 * math.pi * n / (nw - 1)) for n in range(nw)]
    frames = np.zeros((nw, count))
    for col in range(1, count + 1):
        for row in range(1, nw + 1):
            frames[row - 1, col - 1] = emph[ns * (col - 1) + row - 1] * window[row - 1]
    mag = np.abs(np.fft.fft(frames, nfft, axis=0))[:k_bins]
    # trifbank(M, K, R, fs, hz2mel, mel2hz)
    hz2mel = lambda hz: 1127 * math.log(1 + hz / 700)  # noqa: E731 (as the MATLAB handles)
    mel2hz = lambda mel: 700 * math.exp(mel / 1127) - 700  # noqa: E731
    f = [0.5 * fs * k / (k_bins - 1) for k in range(k_bins)]
    step = (hz2mel(r[1]) - hz2mel(r[0])) / (m_filters + 1)
    c = [mel2hz(hz2mel(r[0]) + i * step) for i in range(m_filters + 2)]
    h = np.zeros((m_filters, k_bins))
    for m in range(m_filters):
        for k in range(k_bins):
            if c[m] <= f[k] <= c[m + 1]:
                h[m, k] = (f[k] - c[m]) / (c[m + 1] - c[m])
            if c[m + 1] <= f[k] <= c[m + 2]:
                h[m, k] = (c[m + 2] - f[k]) / (c[m + 2] - c[m + 1])
    log_fbe = np.log(h @ mag)
    cc = np.zeros((n_cep, count))
    for n in range(n_cep):
        lifter = 1 + 0.5 * lift * math.sin(math.pi * n / lift)
        for col in range(count):
            dct = sum(
                math.sqrt(2.0 / m_filters)
                * math.cos(n * math.pi * (m - 0.5) / m_filters)
                * log_fbe[m - 1, col]
                for m in range(1, m_filters + 1)
            )
            cc[n, col] = lifter * dct
    return cc


def savemfcc_windows(speech: np.ndarray) -> dict[int, np.ndarray]:
    """savemfcc.m's files: ``l -> mfccs(:, 4*l-7 : 4*l+19-7)`` read back as ``reshape(20, 12)``
    (fwrite is column-major: time-major bytes), for ``l = 2 : num_bins - 4``."""
    mfccs = matlab_mfcc(speech)[1:, :]  # MFCCs(2:end, :)
    num_bins = math.floor(len(speech) / 16000 * 25)
    out = {}
    for l_ in range(2, num_bins - 4 + 1):
        cols = mfccs[:, 4 * l_ - 7 - 1 : 4 * l_ + 19 - 7]  # 1-based inclusive
        out[l_] = cols.flatten(order="F").reshape(20, 12)
    return out


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A tone with a moving pitch and noise, in [-1, 1] (no digital silence)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * (300 * t + 400 * t**2)) * (1.2 + np.sin(2 * np.pi * 3 * t))
    return np.clip(tone + 0.02 * rng.standard_normal(t.size), -1, 1).astype(np.float32)


# ------------------------------------------------------------------ the davs feature


def test_mfcc_davs_is_the_matlab_recipe() -> None:
    wave = speechlike(0.3)  # 4800 samples: floor((4800 - 400) / 160) + 1 = 28 frames
    ours = audio.mfcc_davs(wave)
    ref = matlab_mfcc(wave).T
    assert ours.shape == ref.shape == (28, 13) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)
    # a partial last frame is dropped (vec2frames without padding), too short gives no row
    assert audio.mfcc_davs(wave[: 4800 + 159]).shape == (28, 13)
    assert audio.mfcc_davs(wave[:399]).shape == (0, 13)


def test_filterbank_has_the_authors_band_and_mel_spacing() -> None:
    bank = audio.davs_filterbank()
    freqs = np.linspace(0, 8000, 257)
    assert bank.shape == (13, 257)
    used = np.nonzero(bank.any(axis=0))[0]
    assert freqs[used[0]] >= 300 and freqs[used[0] - 1] < 300  # band 300-3700 Hz
    assert freqs[used[-1]] <= 3700 and freqs[used[-1] + 1] > 3700
    # 15 edges equally spaced in mel = 1127 ln(1 + f / 700): filter m spans edges m .. m + 2
    lo, hi = 1127 * np.log(1 + 300 / 700), 1127 * np.log(1 + 3700 / 700)
    edges = 700 * np.exp(np.linspace(lo, hi, 15) / 1127) - 700
    for m in range(13):
        support = freqs[bank[m] > 0]
        assert support.min() >= edges[m] and support.max() <= edges[m + 2]
        assert bank[m].max() <= 1 and freqs[bank[m].argmax()] == pytest.approx(edges[m + 1], abs=32)
    # overlapping unit-height triangles: a partition of unity between the first and last centre
    inner = (freqs >= edges[1]) & (freqs <= edges[13])
    np.testing.assert_allclose(bank[:, inner].sum(axis=0), 1.0, atol=1e-12)


def test_lifter_and_level_reach_the_coefficients_as_defined() -> None:
    wave = speechlike(0.2, seed=1).astype(np.float64) * 20000  # int16 scale: no 2^15 step
    base = audio.mfcc_davs(wave).astype(np.float64)
    louder = audio.mfcc_davs(wave * 3).astype(np.float64)
    # log(3 FBE) = log FBE + log 3 in every filter: only c0 moves, by sqrt(2/13) * 13 * log 3
    np.testing.assert_allclose(louder[:, 1:], base[:, 1:], atol=2e-4)
    np.testing.assert_allclose(louder[:, 0] - base[:, 0], math.sqrt(26) * math.log(3), atol=2e-4)
    # c_n = (1 + 11 sin(pi n / 22)) x DCT_n: c12 = 11.99 x its unliftered value (mfcc.m's L = 22)
    lifter = 1 + 11 * np.sin(np.pi * np.arange(13) / 22)
    assert lifter[0] == 1 and abs(lifter[11] - 12.0) < 1e-12
    unlift = matlab_mfcc(wave) / lifter[:, None]
    np.testing.assert_allclose(base / lifter, unlift.T, rtol=1e-4, atol=1e-4)
    # in [-1, 1] the samples are scaled by 2^15 first (mfcc.m): same as int16 scale
    np.testing.assert_allclose(audio.mfcc_davs(wave / 32768), base, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------ prepared and read back


def first_raw(prep: Path, split: str = "train") -> dict:
    meta = json.loads((prep / "meta.json").read_text())
    return StreamingDataset(str(prep / meta["shards"][split]), batch_decode=0)[0]


@pytest.mark.slow
def test_prepare_stores_and_records_the_authors_features(prepared_grid: Path) -> None:
    meta = json.loads((prepared_grid / "meta.json").read_text())
    davs = meta["audio"]["mfcc_davs"]
    assert (davs["frame_ms"], davs["shift_ms"], davs["preemphasis"]) == (25, 10, 0.97)
    assert (davs["band_hz"], davs["filters"], davs["cepstra"], davs["lifter"]) == (
        [300.0, 3700.0],
        13,
        13,
        22,
    )
    assert davs["winfunc"].startswith("hamming") and davs["nfft"] == 512
    assert meta["audio"]["mfcc_wavepad"]["pad_samples"] == 1965
    raw = first_raw(prepared_grid)
    t = int(raw["num_frames"])
    wave = np.asarray(raw["waveform"])
    assert raw["mfcc_davs"].shape == (4 * t, 13) and raw["mfcc_wavepad"].shape == (4 * t + 24, 13)
    stored = np.asarray(raw["mfcc_davs"])
    np.testing.assert_allclose(stored[: 4 * t - 2], matlab_mfcc(wave).T, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(stored[4 * t - 2 :], stored[[4 * t - 3, 4 * t - 3]])  # edge


@pytest.mark.slow
def test_davs_windows_are_the_authors_files(prepared_grid: Path) -> None:
    prepared = PreparedDataset.load(prepared_grid)
    cfg = WindowConfig(num_frames="clip", audio_feature="mfcc_davs", audio_window=20)
    item = next(clip_items(prepared, "train", cfg))
    t = item["frames"].shape[0]
    assert item["audio"].shape == (t, 20, 12)
    files = savemfcc_windows(item["waveform"].numpy())
    assert sorted(files) == list(range(2, t - 4 + 1))  # the frames whose window is whole
    for frame, window in files.items():
        np.testing.assert_allclose(item["audio"][frame].numpy(), window, rtol=1e-4, atol=1e-3)
    dm = TalkingFaceDataModule(str(prepared_grid), audio_feature="mfcc_davs", audio_window=20)
    assert dm.audio_dim == 12
    ds = ClipWindowDataset(prepared, "train", cfg, train=False)
    assert ds[0]["audio"].shape == (t, 20, 12)
    pair = TestPairDataset(prepared, cfg)[0]
    assert pair["audio"].shape[1:] == (20, 12)


def ldm_authors_windows(speech: np.ndarray) -> np.ndarray:
    """ry85's ``VideoDataset.load_audio`` after ``librosa.load``, step by step."""
    speech = np.insert(speech, 0, np.zeros(1965))
    speech = np.append(speech, np.zeros(1965))
    mfcc = python_speech_features.mfcc(speech, 16000, winstep=0.01)
    ind, out = 3, []
    while ind <= int(mfcc.shape[0] / 4) - 4:
        out.append(mfcc[(ind - 3) * 4 : (ind + 4) * 4, 1:])
        ind += 1
    return np.stack(out)


@pytest.mark.slow
def test_zero_waveform_gives_the_ldm_authors_windows(prepared_grid: Path) -> None:
    prepared = PreparedDataset.load(prepared_grid)
    cfg = WindowConfig(num_frames="clip", audio_window=28, audio_pad="zero_waveform")
    item = next(clip_items(prepared, "train", cfg))
    wave = item["waveform"].numpy()
    ref = ldm_authors_windows(wave)
    t = item["frames"].shape[0]
    assert ref.shape == item["audio"].shape == (t, 28, 12)
    np.testing.assert_allclose(item["audio"].numpy(), ref, rtol=1e-4, atol=2e-3)
    # frame 0's first 10 rows are MFCC frames of the padding alone: c1..c12 are 0 there, where
    # the edge choice repeats the clip's first row
    assert np.abs(item["audio"][0, :10].numpy()).max() < 1e-6
    edge = next(clip_items(prepared, "train", WindowConfig(num_frames="clip", audio_window=28)))
    assert np.abs(edge["audio"][0, :10].numpy()).min(axis=1).max() > 0.01
    np.testing.assert_array_equal(edge["audio"][0, :12].numpy(), edge["audio"][0, [0] * 12])
    # generate cuts the same windows from the same waveform
    feats, frames = speech_features(wave, 80, "mfcc", True, "zero_waveform")
    assert frames == t
    gen = audio_windows(feats, np.arange(t), 28, "zero_waveform")
    np.testing.assert_allclose(gen, item["audio"].numpy(), atol=1e-5)
    with pytest.raises(UserError, match="needs audio_feature mfcc"):
        WindowConfig(audio_feature="logmel", audio_pad="zero_waveform")


@pytest.mark.slow
def test_generate_computes_the_davs_feature_as_prepare(prepared_grid: Path) -> None:
    raw = first_raw(prepared_grid)
    feats, frames = speech_features(np.asarray(raw["waveform"]), 80, "mfcc_davs", True)
    assert frames == int(raw["num_frames"])
    np.testing.assert_array_equal(feats, select_features(raw, "mfcc_davs", True))
    meta = json.loads((prepared_grid / "meta.json").read_text())
    assert check_audio_params(meta, "x.ckpt") == 80
    # a dataset prepared before the new features were added still generates ...
    old = {**meta, "audio": {k: v for k, v in meta["audio"].items() if not k.startswith("mfcc_")}}
    assert check_audio_params(old, "x.ckpt") == 80
    # ... and one made with other parameters is refused
    other = json.loads(json.dumps(meta))
    other["audio"]["mfcc_davs"]["lifter"] = 0
    with pytest.raises(UserError, match="mfcc_davs"):
        check_audio_params(other, "x.ckpt")


# ------------------------------------------------------------------ a dataset made before


@pytest.fixture(scope="module")
def old_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset written as prepare wrote them before ``mfcc_davs``/``mfcc_wavepad``: work files
    without them, ``meta.json``'s ``audio`` without their parameters."""
    root = tmp_path_factory.mktemp("old")
    out = root / "prep"
    work = W.WorkDir(out / ".work")
    params = audio.audio_feature_params(8)
    old_audio = {k: v for k, v in params.items() if k not in ("mfcc_davs", "mfcc_wavepad")}
    config = {"features": {"audio": old_audio}, "landmarks": {"backend": "sidecar"}}
    work.create(config)
    items = []
    for i in range(3):
        wave = speechlike(12 * 0.04, seed=i)
        mf, lm = audio.features_for_frames(wave, 12, 8)
        clip = ProcessedClip(
            clip_id=f"s1/c{i}",
            speaker="s1",
            word=None,
            split_hint=None,
            frames=np.full((12, 16, 16, 3), 100, np.uint8),
            waveform=wave,
            mfcc=mf,
            logmel=lm,
            landmarks=np.zeros((12, 68, 2), np.float32),
            landmarks_valid=np.ones(12, bool),
            source_sha256=f"{i:064x}",
        )
        W.save_clip_file(work.clip_path(clip.clip_id), clip, 90)
        items.append((clip.clip_id, RawClip(clip.clip_id, "s1", Path("x.mp4"))))
    opts = PrepareOptions(source=root, out=out, layout="grid", size=16, protocol="utterances")
    write_dataset(opts, "utterances", {**config, "source": str(root / "raw")}, items, work)
    return out


@pytest.mark.parametrize(
    ("feature", "pad", "key"),
    [("mfcc_davs", "edge", "mfcc_davs"), ("mfcc", "zero_waveform", "mfcc_wavepad")],
)
def test_an_old_dataset_refuses_the_new_features_in_one_line(
    old_dataset: Path, feature: str, pad: str, key: str
) -> None:
    prepared = PreparedDataset.load(old_dataset)
    split = next(s for s in ("train", "val", "test") if prepared.shard_dir(s))
    assert TalkingFaceDataModule(str(old_dataset)).audio_dim == 12  # the old features load
    cfg = WindowConfig(audio_feature=feature, audio_pad=pad)
    attempts = [
        lambda: (
            TalkingFaceDataModule(str(old_dataset), audio_feature=feature, audio_pad=pad).audio_dim
        ),
        lambda: ClipWindowDataset(prepared, split, cfg, train=True),
        lambda: next(clip_items(prepared, split, cfg)),
    ]
    for attempt in attempts:
        with pytest.raises(UserError) as exc:
            attempt()
        text = str(exc.value)
        assert "\n" not in text and repr(key) in text
        assert f"talking-faces prepare {old_dataset.parent / 'raw'} {old_dataset}" in text
        assert "--layout grid --size 16 --landmarks sidecar --overwrite" in text

"""Audio features computed once at ``prepare`` time and stored beside the frames.

video.decode_clip (16 kHz mono waveform) -> **audio.prepared_features** -> ProcessedClip -> writer

Four feature arrays, all at 100 Hz (hop 160 samples, 4 rows per 25 fps video frame):

* ``mfcc``: exactly as ``python_speech_features.mfcc`` computes it with :data:`MFCC_PARAMS` (its
  defaults: 25 ms rectangular window, 13 cepstra, 26 filters, NFFT 512, pre-emphasis 0.97, lifter
  22, c0 replaced by log frame energy), on the waveform at int16 scale (``wave * 32768``), as
  ``joonson/syncnet_python`` feeds it. Frames are not centred: row ``k`` is the window starting at
  sample ``160 k``, so rows ``4t .. 4t+3`` start inside video frame ``t`` (SyncNet's convention).
* ``logmel``: ``librosa.feature.melspectrogram`` with :data:`LOGMEL_PARAMS` (Hann window 400, FFT
  512, centred frames, magnitude, Slaney mel filters 55-7600 Hz), natural log with a 1e-5 floor.
  Row ``k`` is centred on sample ``160 k``, so row ``4t + 2`` is centred on video frame ``t``'s
  centre.
* ``mfcc_davs``: the davs authors' MFCC (:func:`mfcc_davs`), written from their MATLAB
  ``preprocess/savemfcc.m`` -> ``runmfcc.m`` -> ``mfcc.m`` (Kamil Wojcicki's HTK-like MFCC, with
  ``trifbank.m`` and ``vec2frames.m``) in Hangz-nju-cuhk/Talking-Face-Generation-DAVS; every
  number of :data:`DAVS_MFCC_PARAMS` names the line it comes from. Row ``k`` is the window
  starting at sample ``160 k`` (not centred), 13 coefficients with c0 the DCT's term 0; the
  authors keep c1..c12 (``MFCCs(2:end, :)``).
* ``mfcc_wavepad``: ``mfcc`` of the waveform with :data:`~talking_faces.data.format.WAVEPAD_SAMPLES`
  (1,965) zeros on each side, as the ldm authors pad it before their MFCC
  (ry85/Stochastic-Talking-Face-Generation-Using-Latent-Distribution-Matching, ``data_loader.py``
  ``load_audio``): ``4T + 24`` rows, row ``r`` starting at clip sample ``160 r - 1965``. It is what
  ``data.audio_pad: zero_waveform`` cuts windows from.

``mfcc``, ``logmel`` and ``mfcc_davs`` are cut or edge-padded to exactly ``4 T`` rows for ``T``
video frames, ``mfcc_wavepad`` to ``4 T + 24``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from talking_faces.data.format import WAVEPAD_ROWS, WAVEPAD_SAMPLES
from talking_faces.names import FEATURES_PER_FRAME, SAMPLE_RATE, SAMPLES_PER_FRAME

#: keyword arguments of ``python_speech_features.mfcc`` (its defaults, written out)
MFCC_PARAMS: dict[str, Any] = dict(
    samplerate=SAMPLE_RATE,
    winlen=0.025,
    winstep=0.01,
    numcep=13,
    nfilt=26,
    nfft=512,
    lowfreq=0,
    highfreq=None,
    preemph=0.97,
    ceplifter=22,
    appendEnergy=True,
)
#: the waveform in [-1, 1] is multiplied by this before the MFCC (int16 scale, as SyncNet's code)
MFCC_INPUT_SCALE = 32768.0

#: log-mel parameters (librosa melspectrogram keywords plus the log floor)
LOGMEL_PARAMS: dict[str, Any] = dict(
    sr=SAMPLE_RATE,
    n_fft=512,
    win_length=400,
    hop_length=160,
    window="hann",
    center=True,
    pad_mode="constant",
    power=1.0,
    n_mels=80,
    fmin=55.0,
    fmax=7600.0,
    htk=False,
    norm="slaney",
    log_floor=1e-5,
)

#: the davs authors' MFCC. ``opt.*`` of ``preprocess/savemfcc.m`` (fs, Tw, Ts, alpha, R, M, C, L);
#: the window is ``runmfcc.m``'s ``hamming`` handle; the rest is ``mfcc.m``'s code: ``Nw =
#: round(1E-3*Tw*fs)``, ``nfft = 2^nextpow2(Nw)``, ``abs(fft(...))`` (magnitude), ``hz2mel =
#: 1127*log(1+hz/700)``, ``dctm`` (no extra c0 weight), ``ceplifter = 1+0.5*L*sin(pi*n/L)``, the
#: ``2^15`` scaling when ``max|x| <= 1``; ``vec2frames(..., padding=false)`` drops a partial last
#: frame; ``trifbank.m`` evaluates each triangle at the FFT bins' frequencies ``linspace(0, fs/2,
#: K)`` (unit peak, no area normalisation).
DAVS_MFCC_PARAMS: dict[str, Any] = dict(
    sample_rate=SAMPLE_RATE,  # opt.fs = 16000
    frame_ms=25,  # opt.Tw
    shift_ms=10,  # opt.Ts
    preemphasis=0.97,  # opt.alpha, filter([1 -alpha], 1, speech)
    band_hz=[300.0, 3700.0],  # opt.R
    filters=13,  # opt.M
    cepstra=13,  # opt.C (c0 included)
    lifter=22,  # opt.L
)
#: MATLAB's ``log(0) = -Inf`` (a filter with no energy: digital silence) cannot be stored; such
#: filterbank energies are replaced by float64 eps, as python_speech_features does. The authors'
#: loader deletes a clip whose windows average a non-finite value (Data_load_sequence.py).
DAVS_ZERO_FLOOR = float(np.finfo(np.float64).eps)

HOP = SAMPLE_RATE // 100  # 160 samples: features at 100 Hz


def mfcc(wave: np.ndarray) -> np.ndarray:
    """python_speech_features MFCC of a 16 kHz waveform in [-1, 1].

    Args:
        wave: (S,) float32 at 16 kHz.

    Returns:
        (N, 13) float32, ``N = 1 + ceil((S - 400) / 160)`` (python_speech_features' framing).
    """
    from python_speech_features import mfcc as psf_mfcc

    x = np.asarray(wave, dtype=np.float64) * MFCC_INPUT_SCALE
    return psf_mfcc(x, **MFCC_PARAMS).astype(np.float32)


def log_mel(wave: np.ndarray, n_mels: int = LOGMEL_PARAMS["n_mels"]) -> np.ndarray:
    """Natural-log mel spectrogram of a 16 kHz waveform.

    Args:
        wave: (S,) float32 at 16 kHz.

    Returns:
        (1 + S // 160, n_mels) float32.
    """
    import librosa

    params = {k: v for k, v in LOGMEL_PARAMS.items() if k != "log_floor"}
    params["n_mels"] = n_mels
    mel = librosa.feature.melspectrogram(y=np.asarray(wave, dtype=np.float32), **params)
    return np.log(np.maximum(mel, LOGMEL_PARAMS["log_floor"])).T.astype(np.float32)


def davs_filterbank(
    filters: int = DAVS_MFCC_PARAMS["filters"],
    bins: int = 257,
    band_hz: tuple[float, float] | list[float] = tuple(DAVS_MFCC_PARAMS["band_hz"]),
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """``trifbank.m``: ``filters`` triangles of unit height, uniformly spaced on the mel scale
    ``1127 ln(1 + f / 700)`` between ``band_hz``, evaluated at ``linspace(0, fs / 2, bins)``.

    Returns:
        (filters, bins) float64.
    """
    freqs = np.linspace(0.0, 0.5 * sample_rate, bins)
    lo, hi = (1127.0 * np.log(1.0 + np.asarray(band_hz, np.float64) / 700.0)).tolist()
    edges = 700.0 * np.exp((lo + np.arange(filters + 2) * (hi - lo) / (filters + 1)) / 1127.0) - 700
    bank = np.zeros((filters, bins))
    for m in range(filters):
        a, c, b = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs >= a) & (freqs <= c)
        bank[m, up] = (freqs[up] - a) / (c - a)
        down = (freqs >= c) & (freqs <= b)
        bank[m, down] = (b - freqs[down]) / (b - c)
    return bank


def mfcc_davs(wave: np.ndarray) -> np.ndarray:
    """The davs authors' MFCC of a 16 kHz waveform (see :data:`DAVS_MFCC_PARAMS`).

    Args:
        wave: (S,) float at 16 kHz, in [-1, 1] (scaled by 2^15 as mfcc.m does) or int16 scale.

    Returns:
        (N, 13) float32 with ``N = floor((S - 400) / 160) + 1`` (0 when S < 400); row ``k`` is the
        frame of samples ``160 k .. 160 k + 399``; column ``n`` is cepstrum ``c_n``.
    """
    from scipy.signal import lfilter

    p = DAVS_MFCC_PARAMS
    fs = int(p["sample_rate"])
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    if x.size and np.max(np.abs(x)) <= 1:
        x = x * 2.0**15
    nw = int(round(1e-3 * p["frame_ms"] * fs))  # 400
    ns = int(round(1e-3 * p["shift_ms"] * fs))  # 160
    nfft = 1 << (nw - 1).bit_length()  # 2^nextpow2(400) = 512
    n_cep, n_fil, lift = int(p["cepstra"]), int(p["filters"]), float(p["lifter"])
    count = (len(x) - nw) // ns + 1
    if count <= 0:
        return np.zeros((0, n_cep), np.float32)
    x = lfilter([1.0, -float(p["preemphasis"])], [1.0], x)
    hamming = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(nw) / (nw - 1))
    frames = x[ns * np.arange(count)[:, None] + np.arange(nw)[None, :]] * hamming
    mag = np.abs(np.fft.rfft(frames, nfft, axis=1))  # (N, nfft/2 + 1)
    fbe = mag @ davs_filterbank(n_fil, nfft // 2 + 1, p["band_hz"], fs).T
    fbe = np.where(fbe == 0, DAVS_ZERO_FLOOR, fbe)
    n, m = np.arange(n_cep)[:, None], np.arange(1, n_fil + 1)[None, :]
    dct = np.sqrt(2.0 / n_fil) * np.cos(n * np.pi * (m - 0.5) / n_fil)  # mfcc.m's dctm(N, M)
    lifter = 1.0 + 0.5 * lift * np.sin(np.pi * np.arange(n_cep) / lift)
    return ((np.log(fbe) @ dct.T) * lifter).astype(np.float32)


def mfcc_wavepad(wave: np.ndarray) -> np.ndarray:
    """:func:`mfcc` of ``wave`` with WAVEPAD_SAMPLES (1,965) zeros on each side, the ldm
    authors' input: (1 + ceil((S + 3930 - 400) / 160), 13) float32 (``4T + 24`` for S = 640 T)."""
    pad = np.zeros(WAVEPAD_SAMPLES, np.float32)
    return mfcc(np.concatenate([pad, np.asarray(wave, dtype=np.float32), pad]))


def fit_rows(feats: np.ndarray, rows: int) -> np.ndarray:
    """Cut ``feats`` (N, F) to ``rows`` rows, or repeat its last row to reach them."""
    if len(feats) >= rows:
        return np.ascontiguousarray(feats[:rows])
    if len(feats) == 0:
        return np.zeros((rows, feats.shape[1]), dtype=feats.dtype)
    pad = np.repeat(feats[-1:], rows - len(feats), axis=0)
    return np.concatenate([feats, pad], axis=0)


def _fitted(wave: np.ndarray, num_frames: int) -> np.ndarray:
    """``wave`` as float32, zero-padded at the end to at least ``640 T`` samples."""
    wave = np.asarray(wave, dtype=np.float32)
    need = num_frames * SAMPLES_PER_FRAME
    if len(wave) < need:
        wave = np.concatenate([wave, np.zeros(need - len(wave), np.float32)])
    return wave


def features_for_frames(
    wave: np.ndarray, num_frames: int, n_mels: int = LOGMEL_PARAMS["n_mels"]
) -> tuple[np.ndarray, np.ndarray]:
    """MFCC and log-mel with exactly 4 rows per video frame.

    Args:
        wave: (S,) float32 16 kHz mono; normally ``S = num_frames * 640``.
        num_frames: T, the number of 25 fps video frames under ``wave``.

    Returns:
        mfcc (4T, 13) float32 and logmel (4T, n_mels) float32.
    """
    wave = _fitted(wave, num_frames)
    rows = num_frames * FEATURES_PER_FRAME
    return fit_rows(mfcc(wave), rows), fit_rows(log_mel(wave, n_mels), rows)


def prepared_features(
    wave: np.ndarray, num_frames: int, n_mels: int = LOGMEL_PARAMS["n_mels"]
) -> dict[str, np.ndarray]:
    """Every stored feature array of a clip, by shard key (see the module docstring).

    Returns:
        ``mfcc`` (4T, 13), ``logmel`` (4T, n_mels), ``mfcc_davs`` (4T, 13) and ``mfcc_wavepad``
        (4T + 24, 13), float32.
    """
    wave = _fitted(wave, num_frames)
    rows = num_frames * FEATURES_PER_FRAME
    mf, lm = features_for_frames(wave, num_frames, n_mels)
    return {
        "mfcc": mf,
        "logmel": lm,
        "mfcc_davs": fit_rows(mfcc_davs(wave), rows),
        "mfcc_wavepad": fit_rows(mfcc_wavepad(wave), rows + 2 * WAVEPAD_ROWS),
    }


def audio_feature_params(n_mels: int = LOGMEL_PARAMS["n_mels"]) -> dict[str, Any]:
    """Every parameter that shaped the stored audio, for ``meta.json``."""
    return {
        "sample_rate": SAMPLE_RATE,
        "hop": HOP,
        "rows_per_frame": FEATURES_PER_FRAME,
        "resampling": "scipy.signal.resample_poly, channels averaged to mono",
        "mfcc": {
            "implementation": "python_speech_features.mfcc",
            **MFCC_PARAMS,
            "winfunc": "rectangular",
            "input_scale": MFCC_INPUT_SCALE,
            "centered": False,
            "c0": "log frame energy",
        },
        "logmel": {
            "implementation": "librosa.feature.melspectrogram",
            **LOGMEL_PARAMS,
            "n_mels": n_mels,
            "log": "natural",
        },
        "mfcc_davs": {
            "implementation": "talking_faces.data.prepare.audio.mfcc_davs (numpy), from "
            "Hangz-nju-cuhk/Talking-Face-Generation-DAVS preprocess/savemfcc.m, runmfcc.m, "
            "mfcc.m, trifbank.m, vec2frames.m",
            **DAVS_MFCC_PARAMS,
            "frame_samples": 400,
            "shift_samples": HOP,
            "nfft": 512,
            "winfunc": "hamming, symmetric: 0.54 - 0.46 cos(2 pi n / (N - 1))",
            "spectrum": "magnitude",
            "mel": "1127 ln(1 + f / 700)",
            "filter_shape": "triangles of unit height at the FFT bin frequencies",
            "log": "natural",
            "dct": "sqrt(2 / M) cos(pi n (m - 0.5) / M), n = 0..C-1",
            "zero_floor": DAVS_ZERO_FLOOR,
            "input_scale": "x 32768 when max |x| <= 1",
            "centered": False,
            "c0": "DCT term 0 (the authors keep c1..c12: data.drop_c0)",
            "authors_window": "20 x 12 for frame t: rows 4t-8 .. 4t+11 (data.audio_window 20)",
        },
        "mfcc_wavepad": {
            "implementation": "python_speech_features.mfcc, as mfcc, of the zero-padded waveform",
            "pad_samples": WAVEPAD_SAMPLES,
            "rows": "4T + 24; row r starts at clip sample 160 r - 1965",
            "source": "ry85/Stochastic-Talking-Face-Generation-Using-Latent-Distribution-"
            "Matching data_loader.py load_audio",
        },
        "row_alignment": "rows 4t..4t+3 belong to video frame t; trailing rows edge-padded",
    }

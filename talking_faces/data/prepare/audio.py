"""Audio features computed once at ``prepare`` time and stored beside the frames.

video.decode_clip (16 kHz mono waveform) -> **audio.features_for_frames** -> ProcessedClip -> writer

Two feature sets, both at 100 Hz (hop 160 samples, 4 rows per 25 fps video frame):

* MFCC exactly as ``python_speech_features.mfcc`` computes it with :data:`MFCC_PARAMS` (its
  defaults: 25 ms rectangular window, 13 cepstra, 26 filters, NFFT 512, pre-emphasis 0.97, lifter
  22, c0 replaced by log frame energy), on the waveform at int16 scale (``wave * 32768``), as
  ``joonson/syncnet_python`` feeds it. Frames are not centred: row ``k`` is the window starting at
  sample ``160 k``, so rows ``4t .. 4t+3`` start inside video frame ``t`` (SyncNet's convention).
* log-mel: ``librosa.feature.melspectrogram`` with :data:`LOGMEL_PARAMS` (Hann window 400, FFT
  512, centred frames, magnitude, Slaney mel filters 55-7600 Hz), natural log with a 1e-5 floor.
  Row ``k`` is centred on sample ``160 k``, so row ``4t + 2`` is centred on video frame ``t``'s
  centre.

Both are cut or edge-padded to exactly ``4 T`` rows for ``T`` video frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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


def fit_rows(feats: np.ndarray, rows: int) -> np.ndarray:
    """Cut ``feats`` (N, F) to ``rows`` rows, or repeat its last row to reach them."""
    if len(feats) >= rows:
        return np.ascontiguousarray(feats[:rows])
    if len(feats) == 0:
        return np.zeros((rows, feats.shape[1]), dtype=feats.dtype)
    pad = np.repeat(feats[-1:], rows - len(feats), axis=0)
    return np.concatenate([feats, pad], axis=0)


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
    wave = np.asarray(wave, dtype=np.float32)
    need = num_frames * SAMPLES_PER_FRAME
    if len(wave) < need:
        wave = np.concatenate([wave, np.zeros(need - len(wave), np.float32)])
    rows = num_frames * FEATURES_PER_FRAME
    return fit_rows(mfcc(wave), rows), fit_rows(log_mel(wave, n_mels), rows)


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
        "row_alignment": "rows 4t..4t+3 belong to video frame t; trailing rows edge-padded",
    }

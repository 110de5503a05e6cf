"""Source-filter (formant) speech synthesizer for the synthetic corpus.

Words from :mod:`talking_faces.data.synthetic.lexicon` become phones with durations (scaled by the
speaker's speaking rate), then a waveform at 16 kHz: the corpus writer stores it (resampled to
25 kHz for the GRID layout, see :func:`resample`) and hands the phone alignment to
:func:`talking_faces.data.synthetic.visemes.mouth_track`, which moves the rendered mouth.

The model is a Klatt-style cascade synthesizer, in numpy:

* voicing: a Rosenberg glottal pulse train (its derivative, which folds in lip radiation) at the
  voice's f0, with an intonation contour (declination, word accents, a slow random contour), jitter
  and shimmer; breathiness adds noise during the open phase of each glottal cycle;
* the vocal tract: cascaded second-order resonators F1-F5 (per-phone F1-F3 targets from
  standard formant tables, scaled by ``Voice.formant_scale``) plus a nasal pole-zero pair that
  cancels outside nasals; the controls move every 5 ms along smoothed trajectories and the
  filter runs block by block with its state carried over, so transitions are smooth and
  click-free;
* obstruents: fricatives are noise through a band filter for their place (voiced ones add
  voicing); plosives are a closure (silent, or a low voice bar for B/D/G), a short burst shaped by
  place, then aspiration through the tract for P/T/K; affricates are a closure then a SH-like
  frication.

Everything random (durations, pauses, intonation, noise) is drawn from the generator passed to
:func:`synthesize`, so the same seed gives the same samples.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import butter, resample_poly, sosfilt

from talking_faces.data.synthetic import detmath
from talking_faces.data.synthetic.lexicon import LEXICON
from talking_faces.names import SAMPLE_RATE  # the synthetic speech is made at the prepared rate

_LN2 = 0.6931471805599453
_BLOCK = 80  # control rate: the tract filter is updated every 5 ms
_PEAK = 0.8  # output peak after normalisation (the contract asks for <= 0.9)
_NOISE_FLOOR = 3e-4  # RMS of the background noise, about -70 dBFS
_MIN_LEAD, _MAX_LEAD, _MIN_TRAIL = 0.2, 0.6, 0.15  # seconds, with a total duration
_EDGE_SILENCE = 0.15  # seconds at both ends without a total duration
_PAUSE_PROB = 0.08  # chance of a short "sp" pause at a word boundary
_NASAL_POLE = 270.0  # Hz; the nasal zero sits here too (and cancels the pole) outside nasals
_F45 = (3400.0, 4500.0)  # fixed F4, F5 (Hz, adult male reference)
_BANDWIDTHS = (70.0, 90.0, 150.0, 250.0, 350.0, 100.0)  # F1-F5, nasal pole (Hz)
_ZERO_BANDWIDTH = 100.0  # nasal antiresonance (Hz)


@dataclass(frozen=True)
class Voice:
    """One speaker's voice.

    Attributes:
        f0: mean fundamental frequency (Hz).
        f0_range: intonation excursion over an utterance (semitones, peak to peak of the
            declination plus accents).
        formant_scale: vocal-tract scaling of all formants (about 0.85-1.0 male, 1.05-1.2 female).
        rate: speaking rate; 1.0 is normal, above 1 faster (phone durations are divided by it).
        breathiness: level of aspiration noise mixed into voicing (0 = modal).
        jitter: relative random f0 perturbation per 5 ms (e.g. 0.01 = 1 %).
        shimmer: relative random amplitude perturbation per glottal cycle.
        open_quotient: fraction of the glottal cycle during which the glottis is open; higher
            values give a softer, steeper-tilted (more female-like) source.
    """

    f0: float
    f0_range: float
    formant_scale: float
    rate: float
    breathiness: float = 0.05
    jitter: float = 0.008
    shimmer: float = 0.03
    open_quotient: float = 0.6

    def __post_init__(self) -> None:
        checks = {
            "f0": 40.0 <= self.f0 <= 500.0,
            "f0_range": 0.0 <= self.f0_range <= 12.0,
            "formant_scale": 0.6 <= self.formant_scale <= 1.5,
            "rate": 0.3 <= self.rate <= 3.0,
            "breathiness": 0.0 <= self.breathiness <= 1.0,
            "jitter": 0.0 <= self.jitter <= 0.1,
            "shimmer": 0.0 <= self.shimmer <= 0.5,
            "open_quotient": 0.3 <= self.open_quotient <= 0.9,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"Voice has out-of-range {', '.join(bad)}: {self!r}")


def speaker_voice(speaker: int, seed: int = 0) -> Voice:
    """The voice of synthetic speaker ``speaker`` (deterministic per ``(speaker, seed)``).

    Even speakers get female-like voices (f0 175-235 Hz, formant scale 1.05-1.2) and odd speakers
    male-like ones (f0 95-140 Hz, formant scale 0.85-1.0). Within a sex, f0 is spread over its
    range by a golden-ratio sequence over speaker indices, so nearby speakers never share a pitch;
    the rest is drawn from a generator seeded by ``(seed, speaker)``.
    """
    if speaker < 0 or seed < 0:
        raise ValueError(f"speaker and seed must be non-negative, got {speaker=}, {seed=}")
    rng = np.random.default_rng([seed, speaker])
    female = speaker % 2 == 0
    offset = np.random.default_rng([seed, 1_000_003]).random()
    spread = (speaker // 2 * 0.6180339887 + offset) % 1.0
    lo, hi = (175.0, 235.0) if female else (95.0, 140.0)
    f0 = lo + (hi - lo) * spread
    # Larger vocal tracts go with lower voices; a little independent variation on top.
    scale_lo, scale_hi = (1.05, 1.2) if female else (0.85, 1.0)
    formant_scale = scale_lo + (scale_hi - scale_lo) * float(
        np.clip(0.6 * spread + 0.4 * rng.random(), 0.0, 1.0)
    )
    return Voice(
        f0=round(float(f0), 2),
        f0_range=round(float(rng.uniform(2.0, 4.0)), 3),
        formant_scale=round(float(formant_scale), 4),
        rate=round(float(rng.uniform(0.85, 1.15)), 4),
        breathiness=round(float(rng.uniform(0.06, 0.18) if female else rng.uniform(0.02, 0.08)), 4),
        jitter=round(float(rng.uniform(0.004, 0.012)), 4),
        shimmer=round(float(rng.uniform(0.02, 0.06)), 4),
        open_quotient=round(float(rng.uniform(0.6, 0.72) if female else rng.uniform(0.5, 0.6)), 4),
    )


@dataclass(frozen=True)
class Phone:
    """One aligned phone: ARPAbet ``symbol`` (or ``"sil"``/``"sp"``) from ``start`` to ``end``
    seconds; ``word`` indexes :attr:`Utterance.words`, -1 for silences and pauses."""

    symbol: str
    start: float
    end: float
    word: int


@dataclass
class Utterance:
    """A synthesized utterance with its phone and word alignment.

    ``phones`` and ``word_times`` are contiguous over ``[0, duration]`` and start and end with
    ``"sil"``; ``word_times`` may contain ``"sp"`` pauses between words. ``waveform`` is float32
    ``(N,)`` at ``sample_rate`` with peak <= 0.9.
    """

    words: list[str]
    phones: list[Phone]
    word_times: list[tuple[str, float, float]]
    waveform: np.ndarray
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        """Length of the waveform in seconds."""
        return len(self.waveform) / self.sample_rate


@dataclass(frozen=True)
class _Spec:
    kind: str  # vowel, approximant, nasal, fricative, stop, affricate, aspirate
    dur: float  # seconds at rate 1.0
    formants: tuple[float, float, float]  # F1-F3 (Hz, adult male) at onset
    offglide: tuple[float, float, float] | None  # F1-F3 at offset for diphthongs
    voicing: float  # amplitude of voicing into the tract
    noise: float  # amplitude of frication (fricatives, affricates) or burst (stops)
    noise_band: str | None  # band of the frication / burst noise, see _NOISE_BANDS
    nasal_zero: float = _NASAL_POLE


def _v(dur: float, f: tuple, gain: float, off: tuple | None = None) -> _Spec:
    return _Spec("vowel", dur, f, off, gain, 0.0, None)


# Formants: Peterson & Barney (1952) / Klatt (1980) adult male values; stops use their loci.
# Gains set the intrinsic level of each phone relative to AA (open vowels loudest, obstruents
# 10-25 dB lower), which is also what makes the mouth opening track speech energy.
_SPECS: dict[str, _Spec] = {
    "AA": _v(0.15, (710, 1100, 2540), 1.00),
    "AE": _v(0.15, (690, 1660, 2490), 1.00),
    "AH": _v(0.09, (620, 1220, 2550), 0.85),
    "AO": _v(0.15, (590, 880, 2540), 0.85),
    "EH": _v(0.11, (550, 1770, 2490), 0.85),
    "ER": _v(0.13, (470, 1380, 1690), 0.85),
    "IH": _v(0.09, (400, 1920, 2560), 0.70),
    "IY": _v(0.12, (280, 2250, 2890), 0.60),
    "UH": _v(0.09, (450, 1030, 2380), 0.70),
    "UW": _v(0.13, (310, 870, 2250), 0.60),
    "AW": _v(0.18, (700, 1200, 2500), 1.00, (420, 900, 2300)),
    "AY": _v(0.17, (700, 1150, 2500), 1.00, (380, 1950, 2600)),
    "EY": _v(0.15, (480, 1900, 2600), 0.80, (320, 2200, 2900)),
    "OW": _v(0.15, (540, 1000, 2450), 0.80, (400, 850, 2300)),
    "OY": _v(0.18, (550, 880, 2500), 0.85, (380, 1900, 2550)),
    "L": _Spec("approximant", 0.06, (360, 1100, 2700), None, 0.40, 0.0, None),
    "R": _Spec("approximant", 0.06, (330, 1100, 1500), None, 0.40, 0.0, None),
    "W": _Spec("approximant", 0.06, (300, 650, 2200), None, 0.38, 0.0, None),
    "Y": _Spec("approximant", 0.055, (270, 2100, 2950), None, 0.38, 0.0, None),
    "M": _Spec("nasal", 0.07, (280, 1000, 2300), None, 0.28, 0.0, None, 750.0),
    "N": _Spec("nasal", 0.06, (280, 1550, 2600), None, 0.28, 0.0, None, 1450.0),
    "NG": _Spec("nasal", 0.07, (280, 1950, 2450), None, 0.28, 0.0, None, 2100.0),
    "F": _Spec("fricative", 0.09, (340, 1100, 2080), None, 0.0, 0.10, "labiodental"),
    "V": _Spec("fricative", 0.06, (220, 1100, 2080), None, 0.18, 0.05, "labiodental"),
    "TH": _Spec("fricative", 0.09, (320, 1290, 2540), None, 0.0, 0.10, "dental"),
    "DH": _Spec("fricative", 0.05, (270, 1290, 2540), None, 0.18, 0.05, "dental"),
    "S": _Spec("fricative", 0.10, (320, 1390, 2530), None, 0.0, 0.55, "alveolar"),
    "Z": _Spec("fricative", 0.08, (240, 1390, 2530), None, 0.15, 0.40, "alveolar"),
    "SH": _Spec("fricative", 0.10, (300, 1840, 2750), None, 0.0, 0.55, "postalveolar"),
    "ZH": _Spec("fricative", 0.08, (300, 1840, 2750), None, 0.15, 0.40, "postalveolar"),
    "HH": _Spec("aspirate", 0.06, (500, 1500, 2500), None, 0.0, 0.0, None),
    "P": _Spec("stop", 0.08, (250, 900, 2100), None, 0.0, 0.35, "burst_labial"),
    "B": _Spec("stop", 0.065, (250, 900, 2100), None, 0.06, 0.25, "burst_labial"),
    "T": _Spec("stop", 0.075, (250, 1700, 2600), None, 0.0, 0.40, "burst_alveolar"),
    "D": _Spec("stop", 0.06, (250, 1700, 2600), None, 0.06, 0.30, "burst_alveolar"),
    "K": _Spec("stop", 0.08, (250, 1990, 2850), None, 0.0, 0.40, "burst_velar"),
    "G": _Spec("stop", 0.07, (250, 1990, 2850), None, 0.06, 0.30, "burst_velar"),
    "CH": _Spec("affricate", 0.10, (300, 1840, 2750), None, 0.0, 0.40, "postalveolar"),
    "JH": _Spec("affricate", 0.085, (300, 1840, 2750), None, 0.15, 0.40, "postalveolar"),
}

_VOICED_STOPS = frozenset({"B", "D", "G"})
_ASPIRATION = 0.35  # aspiration level after the burst of P/T/K, and for HH
_RELEASE_VOICING = 0.8  # voicing between the burst of B/D/G and the end of the stop

# Pass bands (Hz, adult male) of the noise filters, scaled by the voice's formant scale.
_NOISE_BANDS: dict[str, tuple[float, float]] = {
    "labiodental": (1200.0, 7500.0),
    "dental": (1400.0, 7500.0),
    "alveolar": (3800.0, 7600.0),
    "postalveolar": (2000.0, 5500.0),
    "burst_labial": (300.0, 2500.0),
    "burst_alveolar": (2800.0, 7500.0),
    "burst_velar": (1300.0, 3300.0),
}


@functools.lru_cache(maxsize=256)
def _band_sos(band: str, scale: float) -> np.ndarray:
    lo, hi = _NOISE_BANDS[band]
    lo, hi = min(lo * scale, 6500.0), min(hi * scale, 7700.0)
    return butter(2, [lo, hi], btype="bandpass", fs=SAMPLE_RATE, output="sos")


def _phone_sequence(
    words: Sequence[str], voice: Voice, rng: np.random.Generator
) -> list[tuple[str, float, int]]:
    """(symbol, duration s, word index) for the speech part, with "sp" pauses between words."""
    seq: list[tuple[str, float, int]] = []
    last = len(words) - 1
    for w, word in enumerate(words):
        symbols = LEXICON[word]
        jitter = detmath.exp(0.08 * rng.standard_normal(len(symbols)))
        for k, (sym, jit) in enumerate(zip(symbols, jitter, strict=True)):
            dur = _SPECS[sym].dur / voice.rate * float(jit)
            if k == len(symbols) - 1:
                dur *= 1.15  # word-final lengthening
            if w == last:
                dur *= 1.2  # phrase-final lengthening
            seq.append((sym, dur, w))
        pause = rng.random() < _PAUSE_PROB
        pause_dur = float(rng.uniform(0.05, 0.12))
        if pause and w < last:
            seq.append(("sp", pause_dur, -1))
    return seq


def _glottal_derivative(phase: np.ndarray, open_quotient: float) -> np.ndarray:
    """Rosenberg pulse derivative at cycle phase in [0, 1), normalised to unit RMS per cycle."""

    def pulse(ph: np.ndarray) -> np.ndarray:
        tp, tn = 0.65 * open_quotient, 0.35 * open_quotient
        out = np.zeros_like(ph)
        opening = ph < tp
        closing = (ph >= tp) & (ph < tp + tn)
        out[opening] = 0.5 * math.pi / tp * detmath.sin(math.pi * ph[opening] / tp)
        out[closing] = -0.5 * math.pi / tn * detmath.sin(0.5 * math.pi * (ph[closing] - tp) / tn)
        return out

    grid = (np.arange(1024) + 0.5) / 1024
    return pulse(phase) / np.sqrt(np.mean(pulse(grid) ** 2))


def _intonation(
    t: np.ndarray,
    voice: Voice,
    speech: tuple[float, float],
    word_spans: list[tuple[float, float]],
    rng: np.random.Generator,
) -> np.ndarray:
    """Semitones re ``voice.f0`` at times ``t``: declination, word accents, slow random drift."""
    t0, t1 = speech
    u = np.clip((t - t0) / max(t1 - t0, 1e-3), 0.0, 1.0)
    semis = voice.f0_range * (0.35 - 0.7 * u)
    freqs = rng.uniform(0.4, 1.6, size=3)
    phases = rng.uniform(0.0, 2 * math.pi, size=3)
    semis += (
        0.1
        * voice.f0_range
        * detmath.sin(2 * math.pi * freqs[:, None] * t + phases[:, None]).sum(0)
    )
    accents = rng.uniform(0.0, 0.3, size=len(word_spans)) * voice.f0_range
    for (ws, we), a in zip(word_spans, accents, strict=True):
        inside = (t >= ws) & (t < we)
        semis[inside] += a * detmath.sin(math.pi * (t[inside] - ws) / (we - ws))
    in_speech = (t >= t0) & (t < t1)
    if in_speech.any():
        semis -= semis[in_speech].mean()  # keep the mean pitch of the speech at voice.f0
    return semis


def synthesize(
    words: Sequence[str],
    voice: Voice,
    rng: np.random.Generator,
    total_duration: float | None = None,
) -> Utterance:
    """Speak ``words`` with ``voice``.

    With ``total_duration`` (3.0 for GRID) the waveform has exactly
    ``round(total_duration * 16000)`` samples: a random leading silence of 0.2-0.6 s, the speech
    (shortened uniformly if it would not fit), and at least 0.15 s of trailing silence. Without it,
    0.15 s of silence surrounds the speech. All randomness comes from ``rng``.

    Returns an :class:`Utterance` whose waveform is float32 ``(N,)`` at 16 kHz, peak 0.8.
    """
    words = list(words)
    unknown = [w for w in words if w not in LEXICON]
    if not words or unknown:
        raise ValueError(
            f"cannot speak {words!r}: "
            + (f"unknown words {unknown}" if unknown else "no words")
            + "; use words of talking_faces.data.synthetic.lexicon.LEXICON"
        )
    seq = _phone_sequence(words, voice, rng)
    speech_len = sum(d for _, d, _ in seq)
    lead_draw = float(rng.uniform(_MIN_LEAD, _MAX_LEAD))  # drawn either way: same later draws
    if total_duration is None:
        lead, total = _EDGE_SILENCE, speech_len + 2 * _EDGE_SILENCE
    else:
        total = float(total_duration)
        room = total - _MIN_LEAD - _MIN_TRAIL
        if room < 0.25 * speech_len or room <= 0:
            raise ValueError(
                f"total_duration={total_duration} s is too short for {len(words)} words "
                f"(about {speech_len:.2f} s of speech plus {_MIN_LEAD + _MIN_TRAIL:.2f} s silence)"
            )
        if speech_len > room:
            seq = [(s, d * room / speech_len, w) for s, d, w in seq]
            speech_len = room
        lead = min(lead_draw, total - speech_len - _MIN_TRAIL)
    n = round(total * SAMPLE_RATE)

    # Phone boundaries on the sample grid.
    bounds = np.round(
        (lead + np.concatenate([[0.0], np.cumsum([d for _, d, _ in seq])])) * SAMPLE_RATE
    ).astype(int)
    bounds = np.minimum(bounds, n)
    times = [float(b) / SAMPLE_RATE for b in bounds]
    phones = [Phone("sil", 0.0, times[0], -1)]
    phones += [Phone(s, times[i], times[i + 1], w) for i, (s, _, w) in enumerate(seq)]
    phones.append(Phone("sil", times[-1], n / SAMPLE_RATE, -1))
    phones = [p for p in phones if p.end > p.start]

    word_times = _merge_words(phones, words)

    waveform = _render(phones, voice, rng, n, words)
    return Utterance(words=words, phones=phones, word_times=word_times, waveform=waveform)


def _merge_words(phones: list[Phone], words: list[str]) -> list[tuple[str, float, float]]:
    """Word-level alignment: consecutive phones of the same word (or silence) merged."""
    out: list[tuple[str, float, float]] = []
    prev_key: tuple[str, int] | None = None
    for p in phones:
        key = (p.symbol, -1) if p.word < 0 else (words[p.word], p.word)
        if key == prev_key:
            out[-1] = (out[-1][0], out[-1][1], p.end)
        else:
            out.append((key[0], p.start, p.end))
        prev_key = key
    return out


def _render(
    phones: list[Phone], voice: Voice, rng: np.random.Generator, n: int, words: list[str]
) -> np.ndarray:
    """The waveform (n,) float32 of aligned ``phones``; draws from ``rng`` in a fixed order."""
    sr = SAMPLE_RATE
    nb = -(-n // _BLOCK)
    t_block = (np.arange(nb) + 0.5) * _BLOCK / sr
    t_sample = (np.arange(n) + 0.5) / sr
    speech = [p for p in phones if p.word >= 0]
    word_gain = detmath.exp(0.1 * rng.standard_normal(len(words)))

    formants, nasal_zero = _tract_controls(speech, t_block)
    poles = np.empty((nb, 6))
    poles[:, :3] = formants * voice.formant_scale
    poles[:, 3:5] = np.asarray(_F45) * voice.formant_scale
    poles[:, 5] = _NASAL_POLE
    av, asp, fric, burst = _source_envelopes(speech, word_gain, n)

    word_spans = [(s, e) for (w, s, e) in _merge_words(phones, words) if w not in ("sil", "sp")]
    semis = _intonation(t_block, voice, (speech[0].start, speech[-1].end), word_spans, rng)
    f0_block = voice.f0 * detmath.exp(semis * (_LN2 / 12.0))  # 2 ** (semis / 12)
    f0_block *= 1.0 + voice.jitter * rng.standard_normal(nb)
    cycles = np.cumsum(np.interp(t_sample, t_block, f0_block) / sr)
    phase = cycles % 1.0
    cycle = cycles.astype(np.int64)
    shimmer = 1.0 + voice.shimmer * rng.standard_normal(int(cycle[-1]) + 1)
    glottal = _glottal_derivative(phase, voice.open_quotient) * shimmer[cycle]
    noise_tract = rng.standard_normal(n)
    noise_fric = rng.standard_normal(n)
    breath = voice.breathiness * 1.5 * (phase < voice.open_quotient)  # noise while open
    excitation = av * (glottal + breath * noise_tract) + asp * noise_tract

    zero = np.interp(t_sample, t_block, nasal_zero)
    out = _cascade(excitation, poles, np.asarray(_BANDWIDTHS), zero, _ZERO_BANDWIDTH)
    for band, env in sorted(fric.items()):
        out += env * sosfilt(_band_sos(band, voice.formant_scale), noise_fric)
    for band, env in sorted(burst.items()):
        out += env * sosfilt(_band_sos(band, voice.formant_scale), noise_fric)

    peak = np.max(np.abs(out))
    if peak > 0:
        out *= _PEAK / peak
    out += _NOISE_FLOOR * rng.standard_normal(n)
    return np.clip(out, -0.9, 0.9).astype(np.float32)


def _tract_controls(speech: list[Phone], t_block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1-F3 (blocks, 3) and nasal zero (blocks,) in Hz (adult male scale) per 5 ms block.

    Each phone holds its target between 25 % and 75 % of its duration (diphthongs glide from
    onset to offset there); between phones the values move linearly, then a 25 ms smoothing
    rounds the corners. Silences are skipped, so the tract holds its shape across them.
    """
    bp_t: list[float] = []
    bp_f: list[tuple[float, ...]] = []
    for i, p in enumerate(speech):
        spec = _SPECS[p.symbol]
        on, off = spec.formants, spec.offglide or spec.formants
        if spec.kind == "aspirate" and i + 1 < len(speech):  # HH: the shape of the next sound
            on = off = _SPECS[speech[i + 1].symbol].formants
        d = p.end - p.start
        bp_t += [p.start + 0.25 * d, p.end - 0.25 * d]
        bp_f += [(*on, spec.nasal_zero), (*off, spec.nasal_zero)]
    bp = np.asarray(bp_f, dtype=np.float64)
    ctrl = np.stack([np.interp(t_block, bp_t, bp[:, k]) for k in range(4)], axis=1)
    ctrl = uniform_filter1d(ctrl, size=5, axis=0, mode="nearest")
    return ctrl[:, :3], ctrl[:, 3]


def _noise_band(spec: _Spec) -> str:
    """The noise band of a phone that makes noise (every fricative, affricate and stop has one)."""
    if spec.noise_band is None:
        raise ValueError(f"a {spec.kind} spec without a noise_band")
    return spec.noise_band


def _source_envelopes(
    speech: list[Phone], word_gain: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-sample amplitudes (n,): voicing, aspiration, frication and burst per noise band."""
    sr = SAMPLE_RATE
    av = np.zeros(n)
    asp = np.zeros(n)
    fric: dict[str, np.ndarray] = {}
    burst: dict[str, np.ndarray] = {}
    for p in speech:
        spec = _SPECS[p.symbol]
        a, b = round(p.start * sr), round(p.end * sr)
        g = float(word_gain[p.word])
        if spec.kind == "aspirate":
            asp[a:b] = _ASPIRATION * g
            continue
        if spec.kind in ("vowel", "approximant", "nasal", "fricative"):
            av[a:b] = spec.voicing * g
            if spec.kind == "fricative":
                fric.setdefault(_noise_band(spec), np.zeros(n))[a:b] = spec.noise * g
            continue
        # stops and affricates: closure, burst at the release, then what follows the burst
        length = b - a
        burst_len = min(round(0.012 * sr), length // 5)
        if spec.kind == "affricate":
            release = a + int(0.4 * length)
            fric.setdefault(_noise_band(spec), np.zeros(n))[release:b] = spec.noise * g
            av[release:b] = spec.voicing * g
            band = "burst_alveolar"
        elif p.symbol in _VOICED_STOPS:
            release = b - burst_len - min(round(0.012 * sr), length // 6)
            av[a:release] = spec.voicing * g  # voice bar during the closure
            av[release + burst_len : b] = _RELEASE_VOICING * g
            band = _noise_band(spec)
        else:
            release = b - burst_len - min(round(0.04 * sr), int(0.35 * length))
            asp[release + burst_len : b] = _ASPIRATION * g
            band = _noise_band(spec)
        env = burst.setdefault(band, np.zeros(n))
        decay = detmath.exp(-np.arange(burst_len) / (0.004 * sr))
        env[release : release + burst_len] = spec.noise * g * decay
    fric = {band: _smooth(env, 0.01) for band, env in fric.items()}
    burst = {band: _smooth(env, 0.001) for band, env in burst.items()}
    return _smooth(av, 0.012), _smooth(asp, 0.008), fric, burst


def _smooth(x: np.ndarray, seconds: float) -> np.ndarray:
    """Triangular smoothing (two box filters) over about ``seconds``."""
    size = max(1, round(seconds * SAMPLE_RATE / 2))
    return uniform_filter1d(uniform_filter1d(x, size, mode="constant"), size, mode="constant")


def _resonator_coefficients(freq: np.ndarray, bw: np.ndarray) -> tuple[np.ndarray, ...]:
    """Klatt (1980) resonator y[n] = A x[n] + B y[n-1] + C y[n-2], unit gain at DC."""
    t = 1.0 / SAMPLE_RATE
    r = detmath.exp(-math.pi * bw * t)
    c = -(r**2)
    b = 2.0 * r * detmath.cos(2.0 * math.pi * freq * t)
    return 1.0 - b - c, b, c


def _cascade(
    x: np.ndarray, poles: np.ndarray, pole_bws: np.ndarray, zero: np.ndarray, zero_bw: float
) -> np.ndarray:
    """Time-varying cascade of resonators, then the nasal antiresonator.

    ``x``: (N,) excitation. ``poles``: (blocks, P) resonance frequencies (Hz) per 5 ms block with
    bandwidths ``pole_bws`` (P,); the coefficients change per block and the filter state carries
    on. ``zero``: (N,) antiresonance frequency per sample, applied as a direct FIR: its
    DC-normalised coefficients are large near 270 Hz, and switching them inside a stateful filter
    would click.
    """
    a, b, c = _resonator_coefficients(poles, pole_bws[None, :])
    sos = np.zeros((*poles.shape, 6))
    sos[..., 0] = a
    sos[..., 3] = 1.0
    sos[..., 4] = -b
    sos[..., 5] = -c
    nb = poles.shape[0]
    y = np.zeros(nb * _BLOCK)
    y[: len(x)] = x
    blocks = y.reshape(nb, _BLOCK)
    zi = np.zeros((1, poles.shape[1], 2))
    for k in range(nb):
        _sosfilt_inplace(sos[k], blocks[k : k + 1], zi)
    y = y[: len(x)]
    za, zb, zc = _resonator_coefficients(zero, np.full_like(zero, zero_bw))
    out = y.copy()
    out[1:] -= zb[1:] * y[:-1]
    out[2:] -= zc[2:] * y[:-2]
    return out / za


def _sosfilt_public(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    x[0], zi[0] = sosfilt(sos, x[0], zi=zi[0])


def _pick_sosfilt_kernel() -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """The compiled kernel behind ``scipy.signal.sosfilt`` when it behaves like the public one.

    The cascade runs one short block per 5 ms; the public function spends ~25 us per call on
    validation, 15x the filtering itself, which would dominate the synthesis time.
    """
    try:
        from scipy.signal._sosfilt import _sosfilt

        sos = butter(2, [300.0, 3000.0], btype="bandpass", fs=SAMPLE_RATE, output="sos")
        x = np.random.default_rng(0).standard_normal((1, 64))
        zi = np.zeros((1, len(sos), 2))
        zi_ref = zi.copy()
        y, y_ref = x.copy(), x.copy()
        _sosfilt(sos, y, zi)
        _sosfilt_public(sos, y_ref, zi_ref)
        if np.allclose(y, y_ref) and np.allclose(zi, zi_ref):
            return _sosfilt
    except Exception:  # a private API: any change in it just means the slower public path
        pass
    return _sosfilt_public


_sosfilt_inplace = _pick_sosfilt_kernel()


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``), e.g. 16 kHz -> GRID's 25 kHz.

    ``wave``: (N,) -> (ceil(N * sr_out / sr_in),), float32.
    """
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    wave = np.asarray(wave, dtype=np.float32)
    if sr_in == sr_out:
        return wave.copy()
    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(wave, int(sr_out) // g, int(sr_in) // g).astype(np.float32)

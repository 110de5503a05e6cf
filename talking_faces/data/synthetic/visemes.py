"""Viseme targets and coarticulated mouth tracks for the synthetic corpus.

The phone alignment of a synthesized utterance
(:func:`talking_faces.data.synthetic.speech.synthesize`)
becomes four mouth parameters over time; the face renderer draws the lips and jaw from them at each
video frame centre ``(t + 0.5) / 25``. Since the phones are what the audio was made from, the mouth
is a function of the audio: open vowels are loud and open, bilabial closures and silences are quiet
and closed.

Coarticulation follows Cohen & Massaro (1993): each phone has a target per parameter and a
dominance function, ``alpha * exp(-d / tau)`` with ``d`` the distance (s) to a plateau over the
middle half of the phone; the value at a time is the dominance-weighted mean of the targets.
Bilabials dominate lip closure strongly and briefly, so the lips really close in the middle of
P/B/M and part again within about 30 ms of the release; rounding (W, UW, OW) spreads further
than jaw opening.
Diphthongs move from their nucleus target to an offglide target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from talking_faces.data.synthetic import detmath
from talking_faces.data.synthetic.speech import Phone

PARAMETERS: tuple[str, ...] = ("jaw_open", "lip_width", "lip_round", "closure")

# phoneme -> (jaw_open [0,1], lip_width [-1,1], lip_round [0,1], closure [0,1])
VISEMES: dict[str, tuple[float, float, float, float]] = {
    # rest: jaw closed, lips together but not pressed
    "sil": (0.0, 0.0, 0.0, 0.5),
    "sp": (0.0, 0.0, 0.0, 0.5),
    # vowels (diphthongs: nucleus; the offglide is in _OFFGLIDES)
    "AA": (1.00, 0.10, 0.00, 0.0),
    "AE": (0.85, 0.50, 0.00, 0.0),
    "AH": (0.65, 0.10, 0.00, 0.0),
    "AO": (0.80, -0.40, 0.50, 0.0),
    "AW": (0.90, 0.10, 0.00, 0.0),
    "AY": (0.90, 0.10, 0.00, 0.0),
    "EH": (0.60, 0.60, 0.00, 0.0),
    "ER": (0.40, -0.20, 0.40, 0.0),
    "EY": (0.55, 0.60, 0.00, 0.0),
    "IH": (0.40, 0.60, 0.00, 0.0),
    "IY": (0.25, 1.00, 0.00, 0.0),
    "OW": (0.60, -0.50, 0.70, 0.0),
    "OY": (0.60, -0.50, 0.70, 0.0),
    "UH": (0.40, -0.50, 0.60, 0.0),
    "UW": (0.25, -0.90, 1.00, 0.0),
    # consonants
    "P": (0.05, 0.00, 0.00, 1.0),
    "B": (0.05, 0.00, 0.00, 1.0),
    "M": (0.05, 0.00, 0.00, 1.0),
    "F": (0.12, 0.10, 0.00, 0.6),  # lower lip against the upper teeth
    "V": (0.12, 0.10, 0.00, 0.6),
    "TH": (0.20, 0.30, 0.00, 0.0),
    "DH": (0.20, 0.30, 0.00, 0.0),
    "S": (0.15, 0.50, 0.00, 0.0),
    "Z": (0.15, 0.50, 0.00, 0.0),
    "SH": (0.18, -0.40, 0.70, 0.0),
    "ZH": (0.18, -0.40, 0.70, 0.0),
    "CH": (0.18, -0.40, 0.70, 0.0),
    "JH": (0.18, -0.40, 0.70, 0.0),
    "T": (0.22, 0.30, 0.00, 0.0),
    "D": (0.22, 0.30, 0.00, 0.0),
    "N": (0.22, 0.30, 0.00, 0.0),
    "L": (0.30, 0.20, 0.00, 0.0),
    "R": (0.25, -0.30, 0.50, 0.0),
    "K": (0.28, 0.20, 0.00, 0.0),
    "G": (0.28, 0.20, 0.00, 0.0),
    "NG": (0.28, 0.20, 0.00, 0.0),
    "HH": (0.40, 0.00, 0.00, 0.0),
    "W": (0.15, -0.90, 1.00, 0.0),
    "Y": (0.20, 0.80, 0.00, 0.0),
}

_OFFGLIDES: dict[str, tuple[float, float, float, float]] = {
    "AW": (0.35, -0.50, 0.70, 0.0),
    "AY": (0.35, 0.60, 0.00, 0.0),
    "EY": (0.30, 0.80, 0.00, 0.0),
    "OW": (0.35, -0.80, 0.90, 0.0),
    "OY": (0.35, 0.60, 0.00, 0.0),
}

_VOWELS = frozenset(
    {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
)
_SILENCES = frozenset({"sil", "sp"})
_BILABIALS = frozenset({"P", "B", "M"})
_LABIODENTALS = frozenset({"F", "V"})

# Dominance per phone class: strength of jaw opening and of lip closure, a factor on the lip
# width/rounding strengths (which grow with how spread or rounded the target is, so IY dominates
# spreading and UW/W rounding), and decay times (s) for (jaw, width, rounding, closure).
_DOMINANCE: dict[str, tuple[float, float, float, tuple[float, float, float, float]]] = {
    "silence": (1.0, 1.0, 1.0, (0.04, 0.04, 0.04, 0.03)),
    "vowel": (1.0, 1.0, 1.0, (0.04, 0.04, 0.05, 0.03)),
    "bilabial": (0.8, 30.0, 0.6, (0.03, 0.03, 0.05, 0.008)),
    "labiodental": (0.8, 5.0, 0.6, (0.03, 0.03, 0.05, 0.01)),
    "aspirate": (0.05, 0.5, 0.05, (0.03, 0.03, 0.03, 0.03)),
    "consonant": (0.6, 1.0, 1.0, (0.03, 0.04, 0.05, 0.03)),
}


def _dominance(symbol: str, target: tuple[float, ...]) -> tuple[tuple, tuple]:
    """(strengths, decays) for (jaw_open, lip_width, lip_round, closure) of one target."""
    if symbol in _SILENCES:
        cls = "silence"
    elif symbol in _VOWELS:
        cls = "vowel"
    elif symbol in _BILABIALS:
        cls = "bilabial"
    elif symbol in _LABIODENTALS:
        cls = "labiodental"
    elif symbol == "HH":
        cls = "aspirate"
    else:
        cls = "consonant"
    jaw, closure, lips, taus = _DOMINANCE[cls]
    if cls == "silence":
        return (jaw, lips, lips, closure), taus
    width = lips * (0.3 + 1.7 * abs(target[1]))
    rounding = lips * (0.3 + 1.7 * target[2])
    return (jaw, width, rounding, closure), taus


@dataclass
class MouthTrack:
    """Mouth parameters at N times.

    jaw_open (N,) in [0, 1]: 0 closed jaw, 1 wide open (AA).
    lip_width (N,) in [-1, 1]: spread (+, IY/EH) versus narrow (-).
    lip_round (N,) in [0, 1]: protrusion/rounding (UW, OW, W).
    closure (N,) in [0, 1]: 1 = lips pressed shut (P, B, M); 0.5 at rest.
    The inner-lip opening is about ``jaw_open * (1 - closure)``.
    """

    jaw_open: np.ndarray
    lip_width: np.ndarray
    lip_round: np.ndarray
    closure: np.ndarray

    def __len__(self) -> int:
        return len(self.jaw_open)

    def at(self, i: int) -> dict[str, float]:
        """The four parameters at index ``i``."""
        return {name: float(getattr(self, name)[i]) for name in PARAMETERS}


def mouth_track(phones: Sequence[Phone], times: np.ndarray) -> MouthTrack:
    """Coarticulated mouth parameters of an aligned phone sequence at ``times`` (s), shape (N,).

    ``phones`` are :class:`~talking_faces.data.synthetic.speech.Phone` (e.g. ``Utterance.phones``);
    symbols must be keys of :data:`VISEMES`. Video frames use ``times = (np.arange(T) + 0.5) / 25``.
    """
    if not phones:
        raise ValueError("mouth_track needs at least one phone")
    unknown = sorted({p.symbol for p in phones} - VISEMES.keys())
    if unknown:
        raise ValueError(f"no viseme for phones {unknown}; known: {sorted(VISEMES)}")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1:
        raise ValueError(f"times must be 1-D seconds, got shape {times.shape}")

    centres, halves, targets, alphas, taus = [], [], [], [], []
    for p in phones:
        if p.symbol in _OFFGLIDES:  # nucleus over the first half, offglide over the second
            mid = 0.5 * (p.start + p.end)
            segments = [(p.start, mid, VISEMES[p.symbol]), (mid, p.end, _OFFGLIDES[p.symbol])]
        else:
            segments = [(p.start, p.end, VISEMES[p.symbol])]
        for start, end, target in segments:
            centres.append(0.5 * (start + end))
            # Silences hold their rest shape throughout; speech sounds over their middle half.
            half = 0.5 * (end - start)
            halves.append(half if p.symbol in _SILENCES else 0.5 * half)
            alpha, tau = _dominance(p.symbol, target)
            targets.append(target)
            alphas.append(alpha)
            taus.append(tau)

    distance = np.abs(times[:, None] - np.asarray(centres)[None, :]) - np.asarray(halves)[None, :]
    distance = np.maximum(distance, 0.0)[:, :, None]  # (N, M, 1)
    dominance = np.asarray(alphas)[None] * detmath.exp(
        -distance / np.asarray(taus)[None]
    )  # (N, M, 4)
    # Far from every phone all dominances underflow; fall back to the nearest phone's target.
    nearest = np.argmin(distance[:, :, 0], axis=1)
    dominance[np.arange(len(times)), nearest] += 1e-30
    # Sums in a fixed order (no einsum/BLAS kernels whose order depends on the CPU).
    weighted = (dominance * np.asarray(targets)[None]).sum(axis=1)
    values = weighted / dominance.sum(axis=1)
    return MouthTrack(
        jaw_open=np.clip(values[:, 0], 0.0, 1.0),
        lip_width=np.clip(values[:, 1], -1.0, 1.0),
        lip_round=np.clip(values[:, 2], 0.0, 1.0),
        closure=np.clip(values[:, 3], 0.0, 1.0),
    )

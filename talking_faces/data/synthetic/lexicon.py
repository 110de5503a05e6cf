"""GRID grammar, pronunciations and utterance names for the synthetic corpus.

The synthetic speech (:mod:`talking_faces.data.synthetic.speech`) speaks sentences drawn here, and
the corpus writer names each clip with :func:`utterance_name`. The grammar and the utterance names
are GRID's own (:mod:`talking_faces.data.sources.grid`), re-exported here for the generator.

A GRID sentence is six words, one per slot: command, colour, preposition, letter, digit, adverb,
e.g. "bin blue at f two now", named ``bbaf2n``.
"""

from __future__ import annotations

import numpy as np

from talking_faces.data.sources.grid import (  # noqa: F401  (the generator's names)
    GRID_GRAMMAR,
    VOCABULARY,
    utterance_name,
    words_from_utterance,
)

# Standard American pronunciations (CMU Pronouncing Dictionary, stress removed); letters are
# spoken by their names.
LEXICON: dict[str, tuple[str, ...]] = {
    # command
    "bin": ("B", "IH", "N"),
    "lay": ("L", "EY"),
    "place": ("P", "L", "EY", "S"),
    "set": ("S", "EH", "T"),
    # colour
    "blue": ("B", "L", "UW"),
    "green": ("G", "R", "IY", "N"),
    "red": ("R", "EH", "D"),
    "white": ("W", "AY", "T"),
    # preposition
    "at": ("AE", "T"),
    "by": ("B", "AY"),
    "in": ("IH", "N"),
    "with": ("W", "IH", "DH"),
    # letter names
    "a": ("EY",),
    "b": ("B", "IY"),
    "c": ("S", "IY"),
    "d": ("D", "IY"),
    "e": ("IY",),
    "f": ("EH", "F"),
    "g": ("JH", "IY"),
    "h": ("EY", "CH"),
    "i": ("AY",),
    "j": ("JH", "EY"),
    "k": ("K", "EY"),
    "l": ("EH", "L"),
    "m": ("EH", "M"),
    "n": ("EH", "N"),
    "o": ("OW",),
    "p": ("P", "IY"),
    "q": ("K", "Y", "UW"),
    "r": ("AA", "R"),
    "s": ("EH", "S"),
    "t": ("T", "IY"),
    "u": ("Y", "UW"),
    "v": ("V", "IY"),
    "x": ("EH", "K", "S"),
    "y": ("W", "AY"),
    "z": ("Z", "IY"),
    # digit
    "zero": ("Z", "IH", "R", "OW"),
    "one": ("W", "AH", "N"),
    "two": ("T", "UW"),
    "three": ("TH", "R", "IY"),
    "four": ("F", "AO", "R"),
    "five": ("F", "AY", "V"),
    "six": ("S", "IH", "K", "S"),
    "seven": ("S", "EH", "V", "AH", "N"),
    "eight": ("EY", "T"),
    "nine": ("N", "AY", "N"),
    # adverb
    "again": ("AH", "G", "EH", "N"),
    "now": ("N", "AW"),
    "please": ("P", "L", "IY", "Z"),
    "soon": ("S", "UW", "N"),
}

PHONEMES: frozenset[str] = frozenset(p for w in VOCABULARY for p in LEXICON[w])


def random_sentence(rng: np.random.Generator) -> list[str]:
    """Draw one GRID sentence: six words, one per slot in grammar order, uniformly per slot."""
    return [words[int(rng.integers(len(words)))] for words in GRID_GRAMMAR.values()]

"""GRID's grammar and utterance names (Cooke et al., 2006): shared by the GRID reader, ``prepare``
(which checks that a clip's ``.align`` file matches its name) and the synthetic corpus (which
speaks sentences of the same grammar).

A GRID sentence is six words, one per slot: command, colour, preposition, letter, digit, adverb,
e.g. "bin blue at f two now", named ``bbaf2n``.
"""

from __future__ import annotations

from collections.abc import Sequence

_LETTERS: tuple[str, ...] = tuple(c for c in "abcdefghijklmnopqrstuvwxyz" if c != "w")

GRID_GRAMMAR: dict[str, tuple[str, ...]] = {
    "command": ("bin", "lay", "place", "set"),
    "colour": ("blue", "green", "red", "white"),
    "preposition": ("at", "by", "in", "with"),
    "letter": _LETTERS,
    "digit": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "adverb": ("again", "now", "please", "soon"),
}

VOCABULARY: tuple[str, ...] = tuple(sorted({w for slot in GRID_GRAMMAR.values() for w in slot}))

_SLOTS: tuple[str, ...] = tuple(GRID_GRAMMAR)
_DIGIT_CHARS: dict[str, str] = {
    d: ("z" if d == "zero" else str(i)) for i, d in enumerate(GRID_GRAMMAR["digit"])
}


def _slot_code(slot: str, word: str) -> str:
    if slot == "letter":
        return word
    if slot == "digit":
        return _DIGIT_CHARS[word]
    return word[0]


# slot -> {character in the name: word}; initials are unique within every slot.
_DECODE: dict[str, dict[str, str]] = {
    slot: {_slot_code(slot, w): w for w in words} for slot, words in GRID_GRAMMAR.items()
}


def utterance_name(words: Sequence[str]) -> str:
    """GRID utterance name of a six-word sentence.

    >>> utterance_name(["bin", "blue", "at", "f", "two", "now"])
    'bbaf2n'
    """
    if len(words) != len(_SLOTS):
        raise ValueError(f"a GRID sentence has {len(_SLOTS)} words, got {len(words)}: {words!r}")
    chars = []
    for slot, word in zip(_SLOTS, words, strict=True):
        if word not in GRID_GRAMMAR[slot]:
            raise ValueError(
                f"{word!r} is not a GRID {slot}; expected one of {', '.join(GRID_GRAMMAR[slot])}"
            )
        chars.append(_slot_code(slot, word))
    return "".join(chars)


def words_from_utterance(name: str) -> list[str]:
    """Inverse of :func:`utterance_name`.

    >>> words_from_utterance("bbaf2n")
    ['bin', 'blue', 'at', 'f', 'two', 'now']

    Raises ValueError when ``name`` is not six characters that each name a word of their slot.
    """
    if not isinstance(name, str) or len(name) != len(_SLOTS):
        raise ValueError(f"GRID utterance name must be {len(_SLOTS)} characters, got {name!r}")
    words = []
    for slot, char in zip(_SLOTS, name, strict=True):
        word = _DECODE[slot].get(char)
        if word is None:
            raise ValueError(
                f"GRID utterance name {name!r}: {char!r} is not a valid {slot} code "
                f"(expected one of {''.join(_DECODE[slot])})"
            )
        words.append(word)
    return words

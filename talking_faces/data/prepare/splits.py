"""Split protocols: which source clip is train, val or test.

raw corpus -> readers -> **splits** (one split per source clip) -> writer (manifest.jsonl, shards)

Splits are decided once, by ``prepare``, and written into ``manifest.jsonl``; the datamodule never
draws a split at load time. Every source clip the reader listed gets a split, including clips that
are later skipped, so a clip's split never depends on whether its neighbours could be processed.
Assignment depends only on the sorted clip ids, their speakers, the protocol and the seed.

Protocols (``PROTOCOLS`` lists them per layout, ``DEFAULT_PROTOCOL`` the default):

``utterances`` (GRID, default)
    within every speaker, the speaker's clips (sorted by id) are shuffled with a generator seeded
    by ``(seed, crc32(speaker))`` and cut 80/10/10 into train/val/test. A speaker with ``n >= 3``
    clips gets at least one val and one test clip; with 2 clips one train and one val; with 1 clip
    one train.
``unseen-speakers`` (GRID)
    speakers s1, s2, s20 and s22 are test (the protocol of the GRID literature); the clips of the
    other speakers are train, and a seeded 10 % slice of them (at least one clip) is val.
``s29`` (GRID)
    speaker s29 is test; the other speakers' clips are train with a seeded 10 % val slice.
``lrw`` (LRW, default)
    LRW's own ``train``/``val``/``test`` folders.
``by-speaker`` (folder, default)
    speakers (sorted, then shuffled with ``seed``) are cut 80/10/10, at least one speaker each;
    needs three speakers or more.
``by-clip`` (folder)
    all clips (sorted, then shuffled with ``seed``) are cut 80/10/10, at least one clip each.

Every protocol must leave train and val non-empty; otherwise :class:`UserError` says why.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from talking_faces.errors import UserError

SPLITS: tuple[str, ...] = ("train", "val", "test")

PROTOCOLS: dict[str, tuple[str, ...]] = {
    "grid": ("utterances", "unseen-speakers", "s29"),
    "lrw": ("lrw",),
    "folder": ("by-speaker", "by-clip"),
}

DEFAULT_PROTOCOL: dict[str, str] = {"grid": "utterances", "lrw": "lrw", "folder": "by-speaker"}

#: test speakers of GRID's unseen-speaker protocol
GRID_UNSEEN_TEST_SPEAKERS: frozenset[str] = frozenset({"s1", "s2", "s20", "s22"})

VAL_FRACTION = 0.1
TEST_FRACTION = 0.1


@dataclass(frozen=True)
class SplitItem:
    """What a protocol may look at: the clip's id, its speaker and the reader's split hint."""

    clip_id: str
    speaker: str
    split_hint: str | None = None


def resolve_protocol(layout: str, protocol: str | None) -> str:
    """The protocol name to use for ``layout`` (the layout's default when ``protocol`` is None)."""
    if layout not in PROTOCOLS:
        raise UserError(f"unknown layout {layout!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol is None:
        return DEFAULT_PROTOCOL[layout]
    if protocol not in PROTOCOLS[layout]:
        raise UserError(
            f"split protocol {protocol!r} does not apply to layout {layout!r}; "
            f"choose one of {', '.join(PROTOCOLS[layout])}"
        )
    return protocol


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _cut(n: int, minimum: bool) -> tuple[int, int]:
    """Number of (val, test) items out of ``n`` for an 80/10/10 cut."""
    n_val = round(VAL_FRACTION * n)
    n_test = round(TEST_FRACTION * n)
    if minimum:
        if n >= 3:
            n_val, n_test = max(1, n_val), max(1, n_test)
        elif n == 2:
            n_val, n_test = 1, 0
    return n_val, n_test


def _shuffled_cut(ids: Sequence[str], rng: np.random.Generator) -> dict[str, str]:
    order = [ids[i] for i in rng.permutation(len(ids))]
    n_val, n_test = _cut(len(order), minimum=True)
    out = {cid: "test" for cid in order[:n_test]}
    out.update({cid: "val" for cid in order[n_test : n_test + n_val]})
    out.update({cid: "train" for cid in order[n_test + n_val :]})
    return out


def _held_out_speakers(
    items: Sequence[SplitItem], test_speakers: frozenset[str], seed: int, protocol: str
) -> dict[str, str]:
    test = sorted(it.clip_id for it in items if it.speaker in test_speakers)
    rest = sorted(it.clip_id for it in items if it.speaker not in test_speakers)
    if not rest:
        raise UserError(
            f"split protocol {protocol!r} puts every speaker of the source in test "
            f"({', '.join(sorted(test_speakers))}); add other speakers or choose --split-protocol "
            "utterances"
        )
    rng = _rng(seed, protocol)
    order = [rest[i] for i in rng.permutation(len(rest))]
    n_val = max(1, round(VAL_FRACTION * len(order))) if len(order) >= 2 else 0
    out = {cid: "test" for cid in test}
    out.update({cid: "val" for cid in order[:n_val]})
    out.update({cid: "train" for cid in order[n_val:]})
    return out


def assign_splits(
    items: Sequence[SplitItem], layout: str, protocol: str | None = None, seed: int = 0
) -> dict[str, str]:
    """Map every ``clip_id`` of ``items`` to ``"train"``, ``"val"`` or ``"test"``.

    The result does not depend on the order of ``items``. Raises :class:`UserError` when the
    protocol does not fit the corpus (no speaker s29 for ``s29``, too few speakers for
    ``by-speaker``) or leaves train or val empty.
    """
    protocol = resolve_protocol(layout, protocol)
    items = sorted(items, key=lambda it: it.clip_id)
    if not items:
        return {}
    if protocol == "utterances":
        by_speaker: dict[str, list[str]] = defaultdict(list)
        for it in items:
            by_speaker[it.speaker].append(it.clip_id)
        out: dict[str, str] = {}
        for speaker, ids in sorted(by_speaker.items()):
            out.update(_shuffled_cut(ids, _rng(seed, "utterances", speaker)))
    elif protocol == "unseen-speakers":
        out = _held_out_speakers(items, GRID_UNSEEN_TEST_SPEAKERS, seed, protocol)
    elif protocol == "s29":
        if not any(it.speaker == "s29" for it in items):
            raise UserError(
                "split protocol 's29' needs speaker s29 in the source; it has "
                f"{', '.join(sorted({it.speaker for it in items}))}; "
                "choose another --split-protocol"
            )
        out = _held_out_speakers(items, frozenset({"s29"}), seed, protocol)
    elif protocol == "lrw":
        out = {}
        for it in items:
            if it.split_hint not in SPLITS:
                raise UserError(
                    f"LRW clip {it.clip_id} is not under a train/val/test folder; "
                    "keep LRW's WORD/{train,val,test}/ layout"
                )
            out[it.clip_id] = it.split_hint
    elif protocol == "by-speaker":
        speakers = sorted({it.speaker for it in items})
        if len(speakers) < 3:
            raise UserError(
                f"split protocol 'by-speaker' needs at least 3 speaker folders, the source has "
                f"{len(speakers)}; add speakers or use --split-protocol by-clip"
            )
        speaker_split = _shuffled_cut(speakers, _rng(seed, "by-speaker"))
        out = {it.clip_id: speaker_split[it.speaker] for it in items}
    elif protocol == "by-clip":
        out = _shuffled_cut([it.clip_id for it in items], _rng(seed, "by-clip"))
    else:  # pragma: no cover - resolve_protocol guards this
        raise AssertionError(protocol)

    present = set(out.values())
    for needed in ("train", "val"):
        if needed not in present:
            raise UserError(
                f"split protocol {protocol!r} leaves no {needed} clips for {len(items)} source "
                "clips; add clips or choose another --split-protocol"
            )
    return out

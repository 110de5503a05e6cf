"""The test pairs one evaluation scores, in the batches every process count shares.

prepared dataset (``pairs.json``, or every clip of another split) -> **pair_dataset** ->
the first ``--limit`` pairs (**PairSelection**) -> **length_batches** (consecutive pairs of one
length) -> batch i on process i mod N (:mod:`talking_faces.evaluation.loop`)

:func:`dataset_record` and :meth:`PairSelection.record` are how the results describe what was
scored (the comparison key of :mod:`talking_faces.evaluation.results`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from talking_faces.data.dataset import PreparedDataset, TestPairDataset, WindowConfig
from talking_faces.errors import UserError
from talking_faces.utils.io import sha256_json


def pair_dataset(prepared: PreparedDataset, split: str, window: WindowConfig) -> TestPairDataset:
    """The pairs to score: ``pairs.json`` for its split; every clip of another split as a
    same-clip pair (hashed the same way)."""
    if split == prepared.pairs.get("split", "test"):
        return TestPairDataset(prepared, window)
    rows = prepared.rows(split)
    if not rows:
        raise UserError(
            f"split {split!r} of {prepared.root} has no clips; use --split "
            f"{prepared.pairs.get('split', 'test')}"
        )
    pairs = [{"identity": r["clip_id"], "audio": r["clip_id"], "kind": "same-clip"} for r in rows]
    own = dataclasses.replace(
        prepared, pairs={"split": split, "pairs": pairs, "sha256": sha256_json(pairs)}
    )
    return TestPairDataset(own, window)


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Consecutive indices grouped into batches of at most ``batch_size`` equal lengths."""
    batch: list[int] = []
    for i, n in enumerate(lengths):
        if batch and (len(batch) == batch_size or lengths[batch[0]] != n):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


@dataclass
class PairSelection:
    """The pairs scored: the first ``count`` of ``pairs``, with their lengths in frames."""

    pairs: TestPairDataset
    count: int
    lengths: list[int]

    @classmethod
    def of(
        cls, prepared: PreparedDataset, pairs: TestPairDataset, limit: int | None, data: str
    ) -> PairSelection:
        """The first ``limit`` pairs (all of them when None) of the dataset ``data``.

        Raises:
            UserError: no pair to score.
        """
        rows_by_id = {r["clip_id"]: r for r in prepared.manifest if r["status"] == "ok"}
        count = len(pairs) if limit is None else min(limit, len(pairs))
        if count == 0:
            raise UserError(f"{data} has no {pairs.split} pairs to score")
        lengths = [int(rows_by_id[p["audio"]]["frames"]) for p in pairs.pairs[:count]]
        return cls(pairs=pairs, count=count, lengths=lengths)

    def batches(self, batch_size: int, rank: int = 0, world: int = 1) -> list[tuple[int, list]]:
        """``(batch index, pair indices)`` of the batches process ``rank`` of ``world`` scores:
        batch i (pairs of one length, in pair order) goes to process i mod ``world``."""
        batches = enumerate(length_batches(self.lengths, batch_size))
        return [(i, b) for i, b in batches if i % world == rank]

    def record(self) -> dict[str, Any]:
        """The results' ``pairs`` entry."""
        pairs = self.pairs
        return {
            # hash of the pairs actually scored (the pair file's own hash unless --limit cut it)
            "sha256": (
                pairs.sha256 if self.count == len(pairs) else sha256_json(pairs.pairs[: self.count])
            ),
            "file_sha256": pairs.sha256,
            "count": len(pairs),
            "evaluated": self.count,
        }


def dataset_record(prepared: PreparedDataset) -> dict[str, Any]:
    """The results' ``dataset`` entry: where it is, what it is (identity sha256: the comparison
    key) and its exact ``meta.json`` (provenance)."""
    return {
        "path": str(prepared.root),
        "sha256": prepared.identity_sha256(),
        "meta_sha256": sha256_json(prepared.meta),
        "layout": prepared.meta.get("layout"),
        "size": prepared.meta.get("size"),
        "num_clips": prepared.meta.get("num_clips"),
    }


__all__ = ["PairSelection", "dataset_record", "length_batches", "pair_dataset"]

"""Sums that do not depend on the order of their terms: what makes a metric computed over N
processes equal, to the last bit, the same metric computed in one.

metric ``update`` -> **ExactSums** (per-clip terms kept as ``cat`` states) -> ``compute`` with
:func:`math.fsum` (the correctly rounded sum, whatever the order) -> results JSON

A float64 running sum depends on the order of its additions; when ``talking-faces evaluate
--devices N`` scores the test pairs in N processes, torchmetrics adds the per-process sums in
another order than one process would, and a metric can differ in its last bit. Keeping the terms
(a few numbers per test pair) and summing them exactly removes the difference. Counts stay plain
``sum`` states: sums of integers are exact in float64 up to 2**53.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class ExactSums(Metric):
    """A :class:`torchmetrics.Metric` base with order-independent sum states.

    ``add_sum_state(name)`` declares one; ``add_terms(name, values)`` adds every element of
    ``values`` to it; ``exact_sum(name)`` is their correctly rounded float64 sum (a 0-d tensor).
    """

    def add_sum_state(self, name: str) -> None:
        self.add_state(name, default=[], dist_reduce_fx="cat")
        self._sum_states = [*getattr(self, "_sum_states", []), name]

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:
        # a process that scored no pair (fewer batches than processes) holds empty lists, which
        # torchmetrics leaves out of the gather while the others join it: a collective mismatch
        # that aborts gloo. An empty tensor term makes every process join every gather.
        for name in getattr(self, "_sum_states", []):
            state = getattr(self, name)
            if isinstance(state, list) and not state:
                state.append(torch.zeros(0, dtype=torch.float64, device=self.device))
        super()._sync_dist(dist_sync_fn, process_group)

    def add_terms(self, name: str, values: torch.Tensor) -> None:
        getattr(self, name).append(values.detach().reshape(-1).to(torch.float64))

    def exact_sum(self, name: str) -> torch.Tensor:
        state = getattr(self, name)
        terms = dim_zero_cat(state) if isinstance(state, list) and state else state
        if isinstance(terms, list):  # nothing added
            return torch.tensor(0.0, dtype=torch.float64)
        return torch.tensor(math.fsum(terms.cpu().tolist()), dtype=torch.float64)


class ClipMean(ExactSums):
    """Mean over the scored clips of a per-clip statistic (NaN: the clip is not scored); a
    subclass's ``update`` computes the ``B,`` values and hands them to :meth:`_update`.

    States: ``total`` (exact sum of the scored clips' values), ``clips`` and ``clips_unscored``
    (``sum``-reduced counts), so N processes give one process's mean to the last bit.
    ``batch_values`` holds the latest update's per-clip ``B,`` values (local).
    """

    is_differentiable = False
    full_state_update = False
    clips: torch.Tensor  # states registered with add_state
    clips_unscored: torch.Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_sum_state("total")
        for name in ("clips", "clips_unscored"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.batch_values = torch.empty(0, dtype=torch.float64)

    def _update(self, per_clip: torch.Tensor) -> None:
        per_clip = per_clip.to(self.clips.device, torch.float64)
        scored = ~torch.isnan(per_clip)
        self.batch_values = per_clip
        self.add_terms("total", per_clip[scored])
        self.clips += scored.sum()
        self.clips_unscored += (~scored).sum()

    def compute(self) -> torch.Tensor:
        """Mean over the scored clips (NaN when none was)."""
        return self.exact_sum("total") / self.clips

    def counts(self) -> dict[str, int]:
        """``clips_scored`` and ``clips_unscored`` over all processes."""
        with self.sync_context():
            return {"clips_scored": int(self.clips), "clips_unscored": int(self.clips_unscored)}


class FrameScoredMean(ExactSums):
    """Mean over clips of a per-clip score that is itself a mean over the clip's scored frames
    (LMD, CSIM): a subclass's ``update`` computes ``(per_clip B, scored B, failed B)`` and hands
    them to :meth:`_record`.

    States: ``total`` (exact sum of the clip scores), ``clips`` (clips with a score),
    ``frames_scored``, ``failures`` (frames not scored), ``clips_unscored`` (``sum``-reduced).
    ``batch_values`` holds the latest update's per-clip ``B,`` scores (NaN: unscored) and
    ``batch_counts`` its ``B,2`` frames scored and failed (local).
    """

    is_differentiable = False
    full_state_update = False
    clips: torch.Tensor
    frames_scored: torch.Tensor
    failures: torch.Tensor
    clips_unscored: torch.Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_sum_state("total")
        for name in ("clips", "frames_scored", "failures", "clips_unscored"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.batch_values = torch.empty(0, dtype=torch.float64)
        self.batch_counts = torch.empty(0, 2, dtype=torch.long)

    def _record(self, per_clip: torch.Tensor, scored: torch.Tensor, failed: torch.Tensor) -> None:
        per_clip = per_clip.to(self.clips.device)
        has = ~torch.isnan(per_clip)
        self.batch_values = per_clip
        self.batch_counts = torch.stack([scored, failed], 1)
        self.add_terms("total", per_clip[has])
        self.clips += has.sum()
        self.frames_scored += scored.sum().to(self.clips.device)
        self.failures += failed.sum().to(self.clips.device)
        self.clips_unscored += (~has).sum()

    def compute(self) -> torch.Tensor:
        return self.exact_sum("total") / self.clips

    def counts(self) -> dict[str, int]:
        """``frames_scored``, ``frames_failed`` and ``clips_unscored`` over all processes."""
        with self.sync_context():
            return {
                "frames_scored": int(self.frames_scored),
                "frames_failed": int(self.failures),
                "clips_unscored": int(self.clips_unscored),
            }

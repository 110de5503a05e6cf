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

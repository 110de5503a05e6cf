"""Sample diversity of stochastic methods: how different K samples for the same input are.

``generate(identity, audio, num_samples=K)`` -> samples ``B,K,T,3,H,W`` in [0,1] ->
:func:`sample_diversity` (mean over the ``K choose 2`` pairs of the per-frame LPIPS averaged over
frames, and of the mean absolute pixel difference) -> :class:`SampleDiversity` (mean over inputs)
-> results JSON, reported beside the sync scores (diversity alone rewards noise).
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import nn
from torchmetrics import Metric

from talking_faces.metrics.image import frame_lpips


def sample_diversity(
    samples: torch.Tensor, lpips_model: nn.Module | None = None, chunk: int = 128
) -> dict[str, torch.Tensor]:
    """Mean pairwise distance between the K samples of each input.

    Args:
        samples: ``B,K,T,3,H,W`` in [0, 1], ``K >= 2``.
        lpips_model: an LPIPS module (:func:`talking_faces.metrics.image.load_lpips`); without
            it only ``l1`` is returned.

    Returns:
        ``{"l1": B, "lpips": B}`` float64: ``l1`` the mean absolute pixel difference, ``lpips``
        the per-frame LPIPS averaged over frames; each averaged over all pairs.

    >>> x = torch.rand(2, 1, 3, 3, 8, 8).expand(2, 3, 3, 3, 8, 8)
    >>> sample_diversity(x)["l1"].tolist()
    [0.0, 0.0]
    """
    if samples.ndim != 6:
        raise ValueError(f"samples must be B,K,T,3,H,W; got {tuple(samples.shape)}")
    b, k, t = samples.shape[:3]
    if k < 2:
        raise ValueError(f"diversity needs at least 2 samples per input, got {k}")
    pairs = list(combinations(range(k), 2))
    l1 = torch.zeros(b, dtype=torch.float64, device=samples.device)
    lpips = torch.zeros_like(l1)
    for i, j in pairs:
        first, second = samples[:, i], samples[:, j]  # B,T,3,H,W
        l1 += (first.double() - second.double()).abs().flatten(1).mean(1)
        if lpips_model is not None:
            per_frame = frame_lpips(first.flatten(0, 1), second.flatten(0, 1), lpips_model, chunk)
            lpips += per_frame.to(l1.device).view(b, t).mean(1)
    out = {"l1": l1 / len(pairs)}
    if lpips_model is not None:
        out["lpips"] = lpips / len(pairs)
    return out


class SampleDiversity(Metric):
    """Mean pairwise LPIPS and L1 between K samples, averaged over inputs.

    ``update(samples B,K,T,3,H,W)``; ``compute()`` -> ``{"l1", "lpips"}`` (``lpips`` only with a
    model). Higher means more diverse.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, lpips_model: nn.Module | None = None, chunk: int = 128, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lpips_model = lpips_model
        self.chunk = int(chunk)
        for name in ("l1_sum", "lpips_sum", "inputs"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.batch_values: dict[str, torch.Tensor] = {}

    def update(self, samples: torch.Tensor) -> None:
        values = sample_diversity(samples, self.lpips_model, self.chunk)
        self.batch_values = values
        self.l1_sum += values["l1"].sum().to(self.l1_sum.device)
        if "lpips" in values:
            self.lpips_sum += values["lpips"].sum().to(self.l1_sum.device)
        self.inputs += samples.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        out = {"l1": self.l1_sum / self.inputs}
        if self.lpips_model is not None:
            out["lpips"] = self.lpips_sum / self.inputs
        return out

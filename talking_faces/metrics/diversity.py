"""Sample diversity of stochastic methods: how different K samples for the same input are.

``generate(identity, audio, num_samples=K)`` -> samples ``B,K,T,3,H,W`` in [0,1] ->
:func:`sample_diversity` (mean over the ``K choose 2`` pairs of the per-frame LPIPS averaged over
frames, and of the mean absolute pixel difference) -> :class:`SampleDiversity` (mean over inputs)
-> results JSON, reported beside the sync scores (diversity alone rewards noise).

Two checks of *where* and *how harmlessly* samples differ, both optional:

- ``mouth_share``: the share of the pairwise absolute pixel difference that lies inside the mouth
  (a box around landmarks 48-67 per frame, :func:`mouth_mask`), next to ``mouth_area``, the share
  of pixels inside it. A model whose samples vary the head, eyes and expression but keep the
  speech-driven mouth has ``mouth_share`` near ``mouth_area``, not near 1.
- LSE-C per sample (``B,K``, scored by the caller with the protocol's SyncNet):
  ``lse_c_spread`` is the mean over inputs of ``max_k |c_k - mean_k c| / mean_k c`` (how far one
  input's samples stray in sync); ``lse_c_sample_spread`` compares the K samples' LSE-C averaged
  over all inputs (sample ``k`` taken as one run of the method): ``max_k |C_k - mean C| / mean C``.
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import nn

from talking_faces.metrics.exact import ExactSums
from talking_faces.metrics.image import frame_lpips

MOUTH = slice(48, 68)


def mouth_mask(
    landmarks: torch.Tensor,
    valid: torch.Tensor | None,
    height: int,
    width: int,
    margin: float = 0.25,
) -> torch.Tensor:
    """``B,T,68,2`` landmarks (x, y pixels) -> ``B,T,H,W`` bool mask of each frame's mouth box.

    The box spans the mouth points (48-67) and ``margin`` times the mouth's width on every side.
    Frames whose landmarks are not valid take the mean box of the clip's valid frames; a clip with
    none gets an empty mask.
    """
    if landmarks.ndim != 4 or landmarks.shape[2:] != (68, 2):
        raise ValueError(f"landmarks must be B,T,68,2; got {tuple(landmarks.shape)}")
    b, t = landmarks.shape[:2]
    mouth = landmarks[:, :, MOUTH].float()
    lo, hi = mouth.amin(2), mouth.amax(2)  # B,T,2
    pad = margin * (hi[..., :1] - lo[..., :1])
    boxes = torch.cat([lo - pad, hi + pad], -1)  # B,T,4: x0, y0, x1, y1
    ok = torch.ones(b, t, dtype=torch.bool, device=boxes.device) if valid is None else valid.bool()
    ok = ok & torch.isfinite(boxes).all(-1)
    weight = ok.unsqueeze(-1).float()
    mean_box = (torch.nan_to_num(boxes) * weight).sum(1) / weight.sum(1).clamp(min=1)  # B,4
    boxes = torch.where(ok.unsqueeze(-1), torch.nan_to_num(boxes), mean_box.unsqueeze(1))
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    x0, y0, x1, y1 = (boxes[..., i, None] for i in range(4))
    in_x = (xs >= x0) & (xs <= x1)  # B,T,W
    in_y = (ys >= y0) & (ys <= y1)  # B,T,H
    mask = in_y.unsqueeze(-1) & in_x.unsqueeze(-2)
    has_any = ok.any(1).view(b, 1, 1, 1)
    return mask & has_any


def sample_diversity(
    samples: torch.Tensor,
    lpips_model: nn.Module | None = None,
    chunk: int = 128,
    mouth: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Mean pairwise distance between the K samples of each input.

    Args:
        samples: ``B,K,T,3,H,W`` in [0, 1], ``K >= 2``.
        lpips_model: an LPIPS module (:func:`talking_faces.metrics.image.load_lpips`); without
            it only ``l1`` is returned.
        mouth: ``B,T,H,W`` bool mouth mask (:func:`mouth_mask`); adds ``diff``, ``mouth_diff``
            (summed absolute differences, all pixels and inside the mouth) and ``mouth_area``.

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
    if mouth is not None and (mouth.shape[:2] != (b, t) or mouth.shape[2:] != samples.shape[-2:]):
        raise ValueError(f"mouth must be B,T,H,W = {(b, t, *samples.shape[-2:])}")
    l1 = torch.zeros(b, dtype=torch.float64, device=samples.device)
    lpips = torch.zeros_like(l1)
    diff_sum, mouth_sum = torch.zeros_like(l1), torch.zeros_like(l1)
    for i, j in pairs:
        first, second = samples[:, i], samples[:, j]  # B,T,3,H,W
        diff = (first.double() - second.double()).abs()
        l1 += diff.flatten(1).mean(1)
        if mouth is not None:
            diff_sum += diff.flatten(1).sum(1)
            mouth_sum += (diff * mouth.unsqueeze(2).to(diff.device)).flatten(1).sum(1)
        if lpips_model is not None:
            per_frame = frame_lpips(first.flatten(0, 1), second.flatten(0, 1), lpips_model, chunk)
            lpips += per_frame.to(l1.device).view(b, t).mean(1)
    out = {"l1": l1 / len(pairs)}
    if lpips_model is not None:
        out["lpips"] = lpips / len(pairs)
    if mouth is not None:
        out["diff"], out["mouth_diff"] = diff_sum, mouth_sum
        out["mouth_area"] = mouth.flatten(1).double().mean(1).to(l1.device)
    return out


class SampleDiversity(ExactSums):
    """Mean pairwise LPIPS and L1 between K samples, averaged over inputs; optionally where the
    samples differ (mouth share) and how their LSE-C spreads (see the module docstring).

    ``update(samples B,K,T,3,H,W, mouth=None, lse_c=None)`` with ``mouth`` ``B,T,H,W`` and
    ``lse_c`` ``B,K``; ``compute()`` -> ``{"l1", "lpips", "mouth_share", "mouth_area",
    "lse_c_spread", "lse_c_spread_max", "lse_c_sample_spread"}`` (each only when its inputs were
    given). Higher ``l1``/``lpips`` means more diverse. ``num_samples`` (K) is needed for
    ``lse_c_sample_spread``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    # states registered with add_state
    inputs: torch.Tensor
    mouth_inputs: torch.Tensor
    sync_inputs: torch.Tensor
    spread_max: torch.Tensor

    def __init__(
        self,
        lpips_model: nn.Module | None = None,
        chunk: int = 128,
        num_samples: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.lpips_model = lpips_model
        self.chunk = int(chunk)
        self.num_samples = num_samples
        zero = torch.tensor(0.0, dtype=torch.float64)
        # sums of per-input values, exact whatever the order (talking_faces.metrics.exact)
        for name in ("l1_sum", "lpips_sum", "diff_sum", "mouth_diff_sum", "mouth_area_sum"):
            self.add_sum_state(name)
        self.add_sum_state("spread_sum")
        for name in ("inputs", "mouth_inputs", "sync_inputs"):
            self.add_state(name, zero.clone(), dist_reduce_fx="sum")
        self.add_state("spread_max", zero.clone(), dist_reduce_fx="max")
        k = int(num_samples) if num_samples else 0
        #: per-sample LSE-C sums, one exact sum per sample index
        self.lse_c_states = [f"lse_c_sample{i}" for i in range(k)]
        for name in self.lse_c_states:
            self.add_sum_state(name)
        self.batch_values: dict[str, torch.Tensor] = {}

    def update(
        self,
        samples: torch.Tensor,
        mouth: torch.Tensor | None = None,
        lse_c: torch.Tensor | None = None,
    ) -> None:
        values = sample_diversity(samples, self.lpips_model, self.chunk, mouth)
        dev = self.inputs.device
        self.add_terms("l1_sum", values["l1"])
        if "lpips" in values:
            self.add_terms("lpips_sum", values["lpips"])
        self.inputs += samples.shape[0]
        if mouth is not None:
            self.add_terms("diff_sum", values["diff"])
            self.add_terms("mouth_diff_sum", values["mouth_diff"])
            self.add_terms("mouth_area_sum", values["mouth_area"])
            self.mouth_inputs += samples.shape[0]
            values["mouth_share"] = values["mouth_diff"] / values["diff"].clamp(min=1e-12)
        if lse_c is not None:
            if lse_c.shape != samples.shape[:2]:
                raise ValueError(f"lse_c must be B,K = {tuple(samples.shape[:2])}")
            c = lse_c.double().to(dev)
            mean = c.mean(1, keepdim=True)
            spread = (c - mean).abs().amax(1) / mean.squeeze(1).abs().clamp(min=1e-12)
            self.add_terms("spread_sum", spread)
            self.spread_max = torch.maximum(self.spread_max, spread.max())
            self.sync_inputs += c.shape[0]
            if len(self.lse_c_states) == c.shape[1]:
                for i, name in enumerate(self.lse_c_states):
                    self.add_terms(name, c[:, i])
            values["lse_c_spread"] = spread
        self.batch_values = values

    def compute(self) -> dict[str, torch.Tensor]:
        out = {"l1": self.exact_sum("l1_sum") / self.inputs}
        if self.lpips_model is not None:
            out["lpips"] = self.exact_sum("lpips_sum") / self.inputs
        if self.mouth_inputs > 0:
            diff = self.exact_sum("diff_sum").clamp(min=1e-12)
            out["mouth_share"] = self.exact_sum("mouth_diff_sum") / diff
            out["mouth_area"] = self.exact_sum("mouth_area_sum") / self.mouth_inputs
        if self.sync_inputs > 0:
            out["lse_c_spread"] = self.exact_sum("spread_sum") / self.sync_inputs
            out["lse_c_spread_max"] = self.spread_max
            if self.lse_c_states:
                sums = torch.stack([self.exact_sum(name) for name in self.lse_c_states])
                per_sample = sums / self.sync_inputs
                mean = per_sample.mean()
                out["lse_c_sample_spread"] = (per_sample - mean).abs().max() / mean.abs().clamp(
                    min=1e-12
                )
        return out

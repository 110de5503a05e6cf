"""Identity similarity (CSIM): does the generated face stay the person of the identity image?

identity image + generated frames -> a face embedder
(:mod:`talking_faces.metrics.face_models`: dlib's ResNet, or ArcFace from its weight file) ->
**identity_similarity** (cosine of the identity's embedding with each frame's, mean over the
clip's frames where a face was found) -> :class:`IdentitySimilarity` (mean over clips) -> the
results' ``csim_dlib`` / ``csim_arcface``

The key names the embedder, because the numbers are not interchangeable: dlib's 128-d embedding
(trained for a 0.6 Euclidean threshold, cosines of one person's faces typically above 0.9) and
ArcFace's 512-d embedding (cosines of one person's faces typically 0.5 to 0.8) put the same pair
at very different cosines, and papers' "CSIM" is ArcFace's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from talking_faces.metrics.exact import FrameScoredMean

#: the results key of each embedder
CSIM_KEYS = {"dlib": "csim_dlib", "arcface": "csim_arcface"}


def identity_similarity(
    identity: Tensor, frames: Tensor, frames_valid: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-clip CSIM.

    Args:
        identity: ``B,D`` embeddings of the identity images (a row of NaN: no face found).
        frames: ``B,T,D`` embeddings of the generated frames (NaN rows: no face).
        frames_valid: ``B,T`` bool, whether each frame's embedding was found (default: its row is
            finite).

    Returns:
        ``per_clip`` ``B,`` float64 (mean cosine over the scored frames; NaN where none or where
        the identity image has no face), ``frames_scored`` ``B,`` long, ``frames_failed`` ``B,``.

    >>> ident = torch.tensor([[1.0, 0.0]])
    >>> frames = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> per_clip, scored, failed = identity_similarity(ident, frames)
    >>> float(per_clip[0]), int(scored[0]), int(failed[0])
    (0.5, 2, 0)
    """
    if identity.ndim != 2 or frames.ndim != 3 or identity.shape != frames.shape[::2]:
        raise ValueError(
            f"identity must be B,D and frames B,T,D; got {tuple(identity.shape)} and "
            f"{tuple(frames.shape)}"
        )
    b, t = frames.shape[:2]
    ok = torch.isfinite(frames).all(-1) & torch.isfinite(identity).all(-1)[:, None]
    if frames_valid is not None:
        ok &= frames_valid.to(frames.device, torch.bool)
    safe_frames = torch.where(ok[..., None], frames, 1.0).double()
    safe_id = torch.where(torch.isfinite(identity), identity, 1.0).double()
    cos = torch.nn.functional.cosine_similarity(safe_frames, safe_id[:, None, :], dim=-1)
    scored = ok.sum(1)
    total = torch.where(ok, cos, 0.0).sum(1)
    per_clip = torch.where(scored > 0, total / scored.clamp(min=1), float("nan"))
    return per_clip, scored, t - scored


class IdentitySimilarity(FrameScoredMean):
    """CSIM: the frame mean within each clip, then the mean over the clips that have a score.

    ``update(identity B,D, frames B,T,D, frames_valid B,T)`` (embeddings, see
    :func:`identity_similarity`). ``compute()`` -> mean CSIM in [-1, 1]. ``batch_values`` holds
    the latest update's per-clip ``B,`` values and ``batch_counts`` its ``B,2`` frames scored and
    failed (local).
    """

    higher_is_better = True

    def update(self, identity: Tensor, frames: Tensor, frames_valid: Tensor | None = None) -> None:
        self._record(*identity_similarity(identity, frames, frames_valid))


__all__ = ["CSIM_KEYS", "IdentitySimilarity", "identity_similarity"]

"""Neural estimators of the mutual information between frames and audio (amie's AMIE).

(frame, audio) pairs -> **MIEstimator** T(frame, audio) scores -> a bound on I(F; A):
:func:`js_bound`, :func:`dv_bound` (MINE), :func:`infonce_bound`

All bounds take the critic's scores on positive pairs (``N``: a frame with its own audio) and on
negative pairs (samples of the product of marginals: the frames with re-paired audio), and return
the estimate to *maximise* (in nats):

- ``dv``: the Donsker-Varadhan representation ``E_P[T] - log E_Q[e^T]`` (MINE, Belghazi et al.
  2018). Its gradient through the log of a mini-batch mean is biased; MINE corrects it with an
  exponential moving average of ``E_Q[e^T]`` in the denominator (:class:`MovingAverage`), which
  changes the gradient, not the reported value. Tight: it approaches the true MI, with high
  variance.
- ``js``: the Jensen-Shannon estimator of Hjelm et al. (2019, "Deep InfoMax"):
  ``E_P[-softplus(-T)] - E_Q[softplus(T)] + log 4``, i.e. twice the Jensen-Shannon divergence
  between joint and product of marginals (0 for independent variables, at most ``2 log 2``). Not
  the MI itself but monotone in it and stable, which is why amie uses it ("relative amplitude").
- ``infonce``: van den Oord et al. (2018): for a batch of ``N`` pairs with every frame scored
  against every audio (``N,N`` scores, positives on the diagonal), ``mean_i [T_ii - logsumexp_j
  T_ij] + log N``; a lower bound of the MI that cannot exceed ``log N``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talking_faces.config.choices import Choice


class MIBound(Choice):
    """The mutual-information bound (a config choice)."""

    js = "js"
    dv = "dv"
    infonce = "infonce"


BOUNDS: tuple[str, ...] = MIBound.names()
LOG4 = math.log(4.0)


def js_bound(pos: Tensor, neg: Tensor) -> Tensor:
    """Jensen-Shannon estimate: ``E_P[-softplus(-T)] - E_Q[softplus(T)] + log 4`` (nats)."""
    return -F.softplus(-pos.float()).mean() - F.softplus(neg.float()).mean() + LOG4


def dv_bound(pos: Tensor, neg: Tensor) -> Tensor:
    """Donsker-Varadhan estimate ``E_P[T] - log E_Q[e^T]`` (the value; see :class:`MovingAverage`
    for MINE's corrected gradient)."""
    neg = neg.float().flatten()
    return pos.float().mean() - (torch.logsumexp(neg, 0) - math.log(neg.numel()))


def infonce_bound(scores: Tensor) -> Tensor:
    """InfoNCE estimate from an ``N,N`` score matrix with the positive pairs on the diagonal."""
    scores = scores.float()
    n = scores.shape[0]
    return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(n)


class MovingAverage(nn.Module):
    """MINE's bias-corrected DV objective with an exponential moving average of ``E_Q[e^T]``.

    ``objective(pos, neg)`` has the value of :func:`dv_bound` but the gradient of
    ``E_P[T] - E_Q[e^T] / ma`` where ``ma`` is the moving average (updated, without gradient, on
    each call in training). The average is a buffer, so it is saved in checkpoints and a resumed
    run continues with it.
    """

    value: Tensor
    started: Tensor

    def __init__(self, rate: float = 0.01) -> None:
        super().__init__()
        self.rate = rate
        self.register_buffer("value", torch.zeros(()))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    def objective(self, pos: Tensor, neg: Tensor) -> Tensor:
        neg = neg.float().flatten()
        # mean of e^T computed stably through log-sum-exp
        log_mean = torch.logsumexp(neg, 0) - math.log(neg.numel())
        mean_exp = log_mean.exp()
        if self.training:
            with torch.no_grad():
                if bool(self.started):
                    self.value.mul_(1 - self.rate).add_(self.rate * mean_exp.detach())
                else:
                    self.value.copy_(mean_exp.detach())
                    self.started.fill_(True)
        ma = self.value.clamp_min(1e-12).detach()
        value = pos.float().mean() - log_mean
        # value, with the corrected gradient: d/dtheta of -(mean e^T) / ma
        surrogate = -mean_exp / ma
        pos_mean = pos.float().mean()
        return value.detach() + (surrogate - surrogate.detach()) + (pos_mean - pos_mean.detach())


class MIEstimator(nn.Module):
    """The critic ``T(frame, audio)``: embeddings of each, joined by an MLP into one score.

    Args:
        frame_net: ``N,...`` frames -> ``N,Df`` embeddings.
        audio_net: ``N,...`` audio -> ``N,Da`` embeddings.
        frame_dim, audio_dim: Df, Da.
        hidden: MLP width.

    ``forward(frames, audio)`` scores aligned rows (``N``); ``matrix(frames, audio)`` scores every
    frame against every audio (``N,N``, row i = frame i).
    """

    def __init__(
        self,
        frame_net: nn.Module,
        audio_net: nn.Module,
        frame_dim: int,
        audio_dim: int,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        self.frame_net, self.audio_net = frame_net, audio_net
        self.frame_proj = nn.Linear(frame_dim, hidden)
        self.audio_proj = nn.Linear(audio_dim, hidden)
        self.head = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2))
        self.out = nn.Linear(hidden, 1)

    def embed(self, frames: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        return self.frame_proj(self.frame_net(frames)), self.audio_proj(self.audio_net(audio))

    def score(self, f: Tensor, a: Tensor) -> Tensor:
        """Scores of embedded pairs (broadcasting): ``...,H`` + ``...,H`` -> ``...``."""
        return self.out(self.head(f + a)).squeeze(-1)

    def forward(self, frames: Tensor, audio: Tensor) -> Tensor:
        f, a = self.embed(frames, audio)
        return self.score(f, a)

    def matrix(self, frames: Tensor, audio: Tensor) -> Tensor:
        f, a = self.embed(frames, audio)
        return self.score(f[:, None], a[None, :])


def estimate(
    bound: str,
    critic: MIEstimator,
    frames: Tensor,
    audio: Tensor,
    perm: Tensor,
    average: MovingAverage | None = None,
) -> Tensor:
    """The ``bound`` estimate of I(frames; audio) with negatives re-paired by ``perm`` (a
    permutation of the rows; ``infonce`` scores every pairing of the batch instead). With
    ``average``, ``dv`` returns MINE's objective (same value, corrected gradient)."""
    if bound == "infonce":
        return infonce_bound(critic.matrix(frames, audio))
    f, a = critic.embed(frames, audio)
    pos, neg = critic.score(f, a), critic.score(f, a[perm])
    if bound == "js":
        return js_bound(pos, neg)
    return average.objective(pos, neg) if average is not None else dv_bound(pos, neg)


def frame_embedding(width: int = 32) -> nn.Module:
    """A frame ``N,3,H,W`` -> ``N,4*width`` embedding: three stride-2 4x4 convs and a global
    average (the critic's image side)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 4, 2, 1),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(width, 2 * width, 4, 2, 1),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(2 * width, 4 * width, 4, 2, 1),
        nn.LeakyReLU(0.2, True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def audio_embedding(inputs: int, hidden: int = 256) -> nn.Module:
    """An audio window ``N,W,F`` (``inputs = W*F`` values) -> ``N,hidden``: a two-layer MLP."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(inputs, hidden),
        nn.LeakyReLU(0.2, True),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(0.2, True),
    )

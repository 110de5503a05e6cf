"""Adversarial losses shared by the GAN methods (davs, amie).

discriminator logits (real and generated inputs) -> **GANLoss** -> discriminator loss / generator
loss -> ``TalkingFaceModule.group_step``

Kinds (``kind``):

- ``bce``: binary cross-entropy on logits (the original GAN loss; the generator maximises
  ``log D(fake)``, the non-saturating form). ``soft_labels`` draws, per call, ``u ~ U(0,
  soft_max)`` and uses targets ``1 - u`` for real and ``u`` for generated inputs in the
  discriminator's loss, as the DAVS authors' ``GANLoss(softlabel=True)`` does (their generator's
  loss keeps hard targets);
- ``lsgan``: least squares to the same targets (Mao et al. 2017);
- ``hinge``: ``relu(1 - D(real)) + relu(1 + D(fake))`` for the discriminator, ``-D(fake)`` for the
  generator (Lim and Ye 2017; Miyato et al. 2018).

A discriminator may return several outputs (a patch map and a pair score): pass them as a sequence;
the loss is the sum over outputs of each output's mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talking_faces.config.choices import Choice


class GanKind(Choice):
    """The GAN loss (a config choice)."""

    bce = "bce"
    lsgan = "lsgan"
    hinge = "hinge"


GAN_KINDS: tuple[str, ...] = GanKind.names()

Logits = Tensor | Sequence[Tensor]


def _as_list(x: Logits) -> list[Tensor]:
    return [x] if isinstance(x, Tensor) else list(x)


class GANLoss(nn.Module):
    """Discriminator and generator losses of one adversarial game.

    Args:
        kind: one of :data:`GAN_KINDS`.
        soft_labels: ``bce``/``lsgan`` only: soften the discriminator's targets by a random
            ``u ~ U(0, soft_max)`` per call.
        soft_max: the largest softening.

    >>> loss = GANLoss("hinge")
    >>> float(loss.discriminator(torch.tensor([2.0]), torch.tensor([-2.0])))
    0.0
    """

    def __init__(self, kind: str = "bce", soft_labels: bool = False, soft_max: float = 0.1) -> None:
        super().__init__()
        if kind not in GAN_KINDS:
            raise ValueError(f"GAN loss kind must be one of {', '.join(GAN_KINDS)}, got {kind!r}")
        if soft_labels and kind == "hinge":
            raise ValueError("soft labels apply to the bce and lsgan losses, not hinge")
        self.kind = kind
        self.soft_labels = soft_labels
        self.soft_max = soft_max

    def _target_loss(self, logits: Tensor, target: float) -> Tensor:
        logits = logits.float()
        full = torch.full_like(logits, target)
        if self.kind == "bce":
            return F.binary_cross_entropy_with_logits(logits, full)
        return F.mse_loss(logits, full)  # lsgan: the discriminator's raw output against 0/1

    def _softening(self, generator: torch.Generator | None) -> float:
        if not self.soft_labels:
            return 0.0
        device = generator.device if generator is not None else "cpu"
        return float(torch.rand(1, generator=generator, device=device)) * self.soft_max

    def discriminator(
        self, real: Logits, fake: Logits, generator: torch.Generator | None = None
    ) -> Tensor:
        """Loss of the discriminator: real inputs as real, generated ones as generated.

        ``real`` and ``fake`` are its logits (one tensor or one per output). Returns
        ``0.5 * (loss_real + loss_fake)`` summed over outputs. ``generator`` draws the label
        softening (so a resumed run softens as an uninterrupted one).
        """
        reals, fakes = _as_list(real), _as_list(fake)
        total = reals[0].new_zeros((), dtype=torch.float32)
        for r, f in zip(reals, fakes, strict=True):
            if self.kind == "hinge":
                total = total + 0.5 * (F.relu(1 - r.float()).mean() + F.relu(1 + f.float()).mean())
                continue
            soft_real = self._softening(generator)
            soft_fake = self._softening(generator)
            total = total + 0.5 * (
                self._target_loss(r, 1.0 - soft_real) + self._target_loss(f, soft_fake)
            )
        return total

    def generator(self, fake: Logits) -> Tensor:
        """Loss of the generator: its outputs should be taken for real (hard targets)."""
        fakes = _as_list(fake)
        total = fakes[0].new_zeros((), dtype=torch.float32)
        for f in fakes:
            total = total + (
                -f.float().mean() if self.kind == "hinge" else self._target_loss(f, 1.0)
            )
        return total

    def classify(self, logits: Logits, real: bool) -> Tensor:
        """Loss pushing ``logits`` towards "real" (``real=True``) or "generated", hard targets:
        what a network trained to fool a discriminator uses (e.g. davs's modality game)."""
        outs = _as_list(logits)
        total = outs[0].new_zeros((), dtype=torch.float32)
        for o in outs:
            if self.kind == "hinge":
                total = total + (-o.float().mean() if real else o.float().mean())
            else:
                total = total + self._target_loss(o, 1.0 if real else 0.0)
        return total

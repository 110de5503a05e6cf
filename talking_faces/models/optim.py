"""Optimizers and learning-rate schedules, built from config fields.

model config (a method's ``Config`` or one network group of it) -> **build_optimizer /
build_scheduler** -> ``configure_optimizers`` of methods and experts.

:class:`OptimConfig` holds what one optimizer needs. Every method's config extends it (the flat
``model.optimizer``, ``model.lr``, ... fields), so a single-optimizer method like ldm is configured
as before. Methods trained adversarially have several network groups, each with its own optimizer:
the flat fields are the defaults of every group and ``model.optim.<group>.<field>`` overrides one
group, e.g. ``model.optim.discriminator.lr=1e-4`` (see
:meth:`talking_faces.models.base.TalkingFaceModule.optimizer_groups`).

Schedules (``lr_schedule``), stepped once per training step:

- ``constant``;
- ``linear``: constant until ``lr_decay_start`` steps, then linear to ``lr_min_ratio * lr`` over
  ``lr_decay_span`` steps (0: at the run's last step), then constant (the pix2pix / DAVS
  schedule: the DAVS authors keep the rate for 100 epochs, then lower it by ``lr / 10000`` per
  epoch, i.e. ``lr_decay_span`` = 10000 epochs, once per step here instead of once per epoch);
- ``cosine``: cosine from ``lr`` to ``lr_min_ratio * lr`` over the run.

``lr_warmup_steps`` ramps linearly from 0 first, for any schedule.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from talking_faces.config.choices import LRSchedule, OptimizerName
from talking_faces.errors import UserError

#: optimizers a config may name
OPTIMIZERS = OptimizerName.names()
#: learning-rate schedules a config may name
SCHEDULES = LRSchedule.names()


@dataclass
class OptimConfig:
    """One optimizer and its schedule."""

    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 2e-4
    weight_decay: float = 0.0
    #: Adam/AdamW betas
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    #: RMSprop smoothing constant
    alpha: float = 0.99
    eps: float = 1e-8
    #: SGD/RMSprop momentum
    momentum: float = 0.0
    lr_schedule: LRSchedule = LRSchedule.constant
    #: linear schedule: steps at the full rate before the decay starts
    lr_decay_start: int = 0
    #: linear schedule: steps from the full rate to the final one (0: until the run's last step)
    lr_decay_span: int = 0
    #: final rate as a fraction of lr (linear and cosine)
    lr_min_ratio: float = 0.0
    lr_warmup_steps: int = 0
    #: clip the gradient norm of the group's parameters to this value before each step (None: no)
    clip_grad_norm: float | None = None


OPTIM_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(OptimConfig))


def optim_config(base: Any, overrides: Mapping[str, Any] | None = None) -> OptimConfig:
    """The :class:`OptimConfig` of ``base``'s optim fields with ``overrides`` applied.

    Raises:
        UserError: an override key that is not an optim field (naming the closest one), an
            unknown optimizer or schedule.
    """
    values = {name: getattr(base, name) for name in OPTIM_FIELDS if hasattr(base, name)}
    for key, value in (overrides or {}).items():
        if key not in OPTIM_FIELDS:
            close = difflib.get_close_matches(str(key), OPTIM_FIELDS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(
                f"unknown optimizer setting '{key}'{hint}; known: {', '.join(OPTIM_FIELDS)}"
            )
        values[key] = value
    c = OptimConfig(**values)
    check_optim_config(c)
    return c


def check_optim_config(c: Any, where: str = "model") -> None:
    """Raise :class:`UserError` for an unknown optimizer or schedule in ``c``."""
    if c.optimizer not in OPTIMIZERS:
        raise UserError(f"{where}.optimizer={c.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    schedule = getattr(c, "lr_schedule", "constant")
    if schedule not in SCHEDULES:
        raise UserError(f"{where}.lr_schedule={schedule!r} is not one of {', '.join(SCHEDULES)}")


def build_optimizer(
    module_or_params: torch.nn.Module | Iterable[torch.nn.Parameter], c: Any
) -> torch.optim.Optimizer:
    """The optimizer named by ``c.optimizer`` (one of :data:`OPTIMIZERS`) over the trainable
    parameters of a module (or an iterable of parameters), with ``c``'s ``lr``, ``betas``,
    ``eps``, ``alpha``, ``momentum`` and ``weight_decay``; shared by methods and experts."""
    source = (
        module_or_params.parameters()
        if isinstance(module_or_params, torch.nn.Module)
        else module_or_params
    )
    params = [p for p in source if p.requires_grad]
    if c.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay
        )
    if c.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay
        )
    if c.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=c.lr,
            alpha=c.alpha,
            eps=c.eps,
            weight_decay=c.weight_decay,
            momentum=c.momentum,
        )
    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


def lr_factor(step: int, c: OptimConfig, total_steps: int) -> float:
    """Multiplier of ``c.lr`` at ``step`` (0-based) of a run of ``total_steps`` steps.

    >>> c = OptimConfig(lr_schedule="linear", lr_decay_start=50)
    >>> [round(lr_factor(s, c, 100), 2) for s in (0, 50, 75, 100)]
    [1.0, 1.0, 0.5, 0.0]
    >>> c = OptimConfig(lr_schedule="linear", lr_decay_start=50, lr_decay_span=1000)
    >>> [round(lr_factor(s, c, 100), 2) for s in (50, 100, 1050, 2000)]
    [1.0, 0.95, 0.0, 0.0]
    """
    factor = 1.0
    span = c.lr_decay_span if c.lr_decay_span > 0 else total_steps - c.lr_decay_start
    if c.lr_schedule == "linear" and span > 0:
        frac = min(max(step - c.lr_decay_start, 0) / span, 1.0)
        factor = 1.0 - (1.0 - c.lr_min_ratio) * frac
    elif c.lr_schedule == "cosine" and total_steps > 0:
        frac = min(step / total_steps, 1.0)
        factor = c.lr_min_ratio + (1.0 - c.lr_min_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))
    if c.lr_warmup_steps > 0 and step < c.lr_warmup_steps:
        factor *= (step + 1) / c.lr_warmup_steps
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, c: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A per-step ``LambdaLR`` for ``c``'s schedule, or None for a constant rate without warmup.

    ``total_steps`` is the run's length in training steps (``trainer.max_steps``).
    """
    if c.lr_schedule == "constant" and c.lr_warmup_steps <= 0:
        return None
    if c.lr_schedule != "constant" and total_steps <= 0:
        raise UserError(f"lr_schedule={c.lr_schedule!r} needs a run length: set trainer.max_steps")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, c, total_steps)
    )

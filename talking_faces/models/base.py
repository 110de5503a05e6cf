"""The interface every talking-face method implements, and what they share.

TalkingFaceDataModule -> Batch -> **TalkingFaceModule** (training_step, generate) -> evaluate

A method subclasses :class:`TalkingFaceModule`, declares its hyper-parameters as a ``Config``
dataclass deriving from :class:`ModelConfig`, and implements :meth:`~TalkingFaceModule.loss`
(a dict of named terms with ``"loss"`` the total) and :meth:`~TalkingFaceModule.generate`. Methods
that need several optimizers (GANs) set ``automatic_optimization = False`` and override
``training_step``. Validation and prediction are shared here and go through ``generate()``, so what
is scored is what a user gets from ``talking-faces generate``.

Validation is kept light: the method's own loss (``val/loss``, the default checkpoint monitor) and
PSNR/SSIM of one sample per clip drawn with a fixed seed, plus mouth LMD (``val/lmd``, in pixels of
a 128 px crop) when a landmark model is attached (:meth:`TalkingFaceModule.attach_landmark_model`;
``fit`` attaches the dataset's trained landmark expert when there is one). The full protocol (LSE,
diversity, the fixed test pairs) is ``talking-faces evaluate``'s job.

The constructor takes the model section of the run config (a mapping or the ``Config`` dataclass)
and saves it as the hyper-parameters, so a checkpoint alone rebuilds the model:
``MODELS[name].load_from_checkpoint(path)`` or :func:`talking_faces.registry.load_model`.

:class:`TrainableModule` is the one base of everything ``fit`` trains, the methods here and the
evaluation experts (:mod:`talking_faces.experts`): config handling and the plain-container
hyper-parameters that make a checkpoint rebuild its network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, cast

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from talking_faces.config.choices import plain
from talking_faces.config.schema import make_config
from talking_faces.errors import UserError
from talking_faces.metrics import LandmarkDistance, VideoPSNR, VideoSSIM
from talking_faces.models.optim import (
    OptimConfig,
    build_optimizer,
    build_scheduler,
    check_optim_config,
    optim_config,
)

if TYPE_CHECKING:  # an annotation only: importing talking_faces.data at runtime loads litdata
    from talking_faces.data.batch import Batch

#: crop size in whose pixels validation LMD is reported (docs/metrics.md)
LMD_SIZE = 128


@dataclass
class ModelConfig(OptimConfig):
    """Hyper-parameters every method has. Methods extend it with their own fields.

    The optimizer fields come from :class:`~talking_faces.models.optim.OptimConfig`. ``image_size``,
    ``audio_window`` and ``audio_features`` describe the data the network is built for; ``fit``
    fills them (and ``num_words`` / ``num_speakers`` where a method has them) from the prepared
    dataset when they are ``None`` and refuses a dataset that disagrees with values given
    explicitly.
    """

    name: str = "?"
    #: square frame size in pixels
    image_size: int | None = None
    #: audio-feature rows per frame window (100 Hz rows; 28 = 0.28 s)
    audio_window: int | None = None
    #: coefficients per audio-feature row (12 for MFCC without c0)
    audio_features: int | None = None
    #: seed of the samples drawn for validation/test/predict (per batch: seed + batch index)
    eval_seed: int = 0
    #: samples per input in ``predict_step``
    predict_samples: int = 1
    #: per network group overrides of the optimizer fields, for methods with several optimizers
    #: (e.g. ``optim: {discriminator: {lr: 1.0e-4}}``); see TalkingFaceModule.optimizer_groups
    optim: dict[str, Any] = field(default_factory=dict)


def _not_set(key: str) -> str:
    return (
        f"model.{key} is not set; build the model through `talking-faces fit` (which reads it "
        f"from the dataset) or pass {key}=..."
    )


def data_field(value: int | None, key: str) -> int:
    """The data-derived config field ``key`` (``image_size``, ``audio_window``,
    ``audio_features``) as an int, for a method's constructor: ``fit`` fills these fields and
    :meth:`TalkingFaceModule.check_config` refuses a config where one is still None."""
    if value is None:
        raise UserError(_not_set(key))
    return value


@dataclass
class MethodEvalData:
    """What ``talking-faces evaluate`` hands to :meth:`TalkingFaceModule.method_metrics`.

    ``windows(num_frames)`` yields Batches of the centred ``num_frames`` window of every clip of
    the evaluated split (clips shorter than that are left out), with the audio features the model
    was trained on; ``clips()`` yields every clip of the split whole, one at a time (frames float
    in [0,1], per-frame audio windows and words: :func:`talking_faces.data.dataset.clip_items`);
    ``limit`` caps the number of clips when evaluate was given ``--limit``.
    """

    root: str
    split: str
    audio: dict[str, Any]
    device: torch.device
    seed: int = 0
    batch_size: int = 8
    limit: int | None = None

    def windows(self, num_frames: int) -> Iterator[Batch]:
        from talking_faces.data import TalkingFaceDataModule

        dm = TalkingFaceDataModule(
            root=self.root,
            num_frames=num_frames,
            batch_size=self.batch_size,
            num_workers=0,
            identity="first",
            seed=self.seed,
            test_split=self.split,
            **self.audio,
        )
        dm.setup("test")
        seen = 0
        for batch in dm.test_dataloader():
            if self.limit is not None and seen >= self.limit:
                return
            if self.limit is not None and seen + len(batch["clip_id"]) > self.limit:
                keep = self.limit - seen
                batch = _batch_head(batch, keep)
            seen += len(batch["clip_id"])
            yield _batch_to(batch, self.device)

    def clips(self) -> Iterator[dict[str, Any]]:
        from talking_faces.data.dataset import PreparedDataset, WindowConfig, clip_items

        prepared = PreparedDataset.load(self.root)
        for n, item in enumerate(clip_items(prepared, self.split, WindowConfig(**self.audio))):
            if self.limit is not None and n >= self.limit:
                return
            item["frames"] = item["frames"].float().div_(255.0)
            yield {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in item.items()}


def _batch_head(batch: Batch, n: int) -> Batch:
    """The first ``n`` windows of ``batch`` (every value sliced; the same keys)."""
    values: Mapping[str, Any] = batch
    return cast("Batch", {k: v[:n] for k, v in values.items()})


def _batch_to(batch: Batch, device: torch.device) -> Batch:
    """``batch`` with its tensors on ``device`` (the same keys)."""
    return cast(
        "Batch", {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
    )


class TrainableModule(L.LightningModule):
    """Base of every network ``fit`` trains: a ``Config`` dataclass (a :class:`ModelConfig`) built
    from a mapping and/or keyword overrides, checked, and saved as the hyper-parameters (plain
    containers only, so checkpoints load with ``torch.load(weights_only=True)``)."""

    Config: ClassVar[type] = ModelConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__()
        cfg = make_config(self.Config, config, **overrides)
        self.check_config(cfg)
        check_optim_config(cfg)
        self.config = cfg
        self.save_hyperparameters({"config": plain(dataclasses.asdict(cfg))})

    def check_config(self, cfg: Any) -> None:
        """Refuse a config this class cannot be built from (a :class:`UserError`)."""


class TalkingFaceModule(TrainableModule):
    """Base of every method: ``generate(identity, audio) -> B,K,T,3,H,W`` and shared evaluation.

    Subclasses set ``Config`` (a :class:`ModelConfig` subclass), ``stochastic`` (whether
    ``generate`` can give several different samples per input) and implement :meth:`loss` and
    :meth:`generate`. Methods trained with several optimizers (adversarial ones) also implement
    :meth:`optimizer_groups` and a ``training_step`` made of :meth:`group_step` calls; methods
    with evaluations of their own implement :meth:`method_metrics`; methods that can be driven by
    something else than audio list it in ``drives`` and implement :meth:`generate_driven`.
    """

    Config: ClassVar[type] = ModelConfig
    #: True when ``generate`` draws samples; deterministic methods reject ``num_samples > 1``
    stochastic: ClassVar[bool] = False
    #: what can drive generation: "audio" always; "video" for methods that implement
    #: generate_driven (``talking-faces evaluate --drive video``)
    drives: ClassVar[tuple[str, ...]] = ("audio",)
    #: config fields that only change generation (test-time options): ``talking-faces evaluate
    #: --option KEY=VALUE`` may set them on a trained model, and results record them
    generation_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        #: seeds the sampling inside the training loss; its state is saved in checkpoints so a
        #: resumed run draws the same noise as an uninterrupted one (see on_fit_start)
        self.train_generator: torch.Generator | None = None
        self._train_generator_state: Tensor | None = None
        self.val_psnr = VideoPSNR()
        self.val_ssim = VideoSSIM()
        self.val_lmd = LandmarkDistance()
        # kept out of the module tree so it is neither trained nor saved with the model
        self._landmark_model: list[Any] = []
        #: group name -> (optimizer index, scheduler index or None), set by configure_optimizers
        self._group_slots: dict[str, tuple[int, int | None]] = {}

    def check_config(self, cfg: Any) -> None:
        for key in ("image_size", "audio_window", "audio_features"):
            if getattr(cfg, key, 0) is None:
                raise UserError(_not_set(key))

    def check_optim_groups(self) -> None:
        """Refuse ``model.optim`` entries that name no network group of this method."""
        names = list(self.optimizer_groups())
        unknown = sorted(set(self.config.optim) - set(names))
        if unknown and not names:
            raise UserError(
                f"model '{self.config.name}' trains with one optimizer: set model.lr, "
                f"model.optimizer, ... instead of model.optim.{unknown[0]}"
            )
        if unknown:
            raise UserError(
                f"model.optim.{unknown[0]} names no network group of '{self.config.name}'; "
                f"its groups: {', '.join(names)}"
            )
        for name in names:
            overrides = self.config.optim.get(name) or {}
            if not isinstance(overrides, Mapping):
                raise UserError(f"model.optim.{name} must be a mapping of optimizer settings")
            try:
                optim_config(self.config, overrides)
            except UserError as exc:
                raise UserError(f"model.optim.{name}: {exc}") from None

    # ----------------------------------------------------------------- what a method provides
    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Named loss terms on a batch; ``"loss"`` is the total that is minimised.

        ``generator`` seeds any sampling inside the loss (validation passes a fixed one).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")

    def generate(
        self,
        identity: Tensor,
        audio: Tensor,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Frames for a face and speech.

        Args:
            identity: ``B,3,H,W`` in [0,1], the reference face.
            audio: ``B,T,W,F`` audio-feature windows, one per output frame.
            num_samples: K samples per input.
            generator: seeds the sampling (on the model's device); the same seed gives the same
                output.

        Returns:
            ``B,K,T,3,H,W`` in [0,1].
        """
        raise NotImplementedError(f"{type(self).__name__} must implement generate()")

    def optimizer_groups(self) -> dict[str, list[nn.Module]]:
        """Network groups, each trained by its own optimizer, in the order they step.

        Empty (the default): one optimizer over every parameter and Lightning's automatic
        optimization (``loss()["loss"]`` is minimised). A method returning groups sets
        ``automatic_optimization = False`` and writes ``training_step`` as :meth:`group_step`
        calls. Each group's optimizer and schedule are the flat optimizer fields of the config
        with ``model.optim.<group>`` on top. ``trainer.max_steps`` counts training steps
        (batches), not optimizer steps: only the first group's step advances
        ``trainer.global_step``. Every trainable parameter must be in exactly one group.
        """
        return {}

    def check_run_config(self, cfg: Any) -> None:
        """Raise :class:`UserError` for a run config (data, trainer) this method cannot train
        with; ``fit`` calls it before anything is written. Nothing to check by default."""

    def method_metrics(self, data: MethodEvalData) -> dict[str, Any]:
        """Evaluations of this method beyond the shared metric suite, for ``talking-faces
        evaluate`` (written under ``method_metrics`` in the results JSON). None by default."""
        return {}

    def generate_driven(
        self,
        identity: Tensor,
        driver: Tensor,
        drive: str,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Frames for a face driven by something else than audio (``drive`` in ``drives``).

        ``driver`` for ``drive="video"`` is ``B,T,3,H,W`` frames in [0,1] of the driving clip;
        returns ``B,K,T,3,H,W`` in [0,1].
        """
        raise UserError(
            f"method '{self.config.name}' can only be driven by audio (it has drives="
            f"{', '.join(self.drives)})"
        )

    def debug_panels(
        self, identity: Tensor, audio: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Extra ``B,T,3,H,W`` images in [0,1] shown beside the samples written during
        validation (e.g. an attention mask); none by default."""
        return {}

    # ------------------------------------------------------------------ optimizers and steps
    def group_optim_config(self, name: str) -> OptimConfig:
        """The optimizer settings of network group ``name``."""
        return optim_config(self.config, self.config.optim.get(name) or {})

    def _total_steps(self) -> int:
        trainer = self._trainer
        if trainer is None:
            return 0
        if trainer.max_steps and trainer.max_steps > 0:
            return int(trainer.max_steps)
        try:
            return int(trainer.estimated_stepping_batches)
        except Exception:  # no loader yet (configure_optimizers outside fit)
            return 0

    def configure_optimizers(self) -> Any:
        self.check_optim_groups()
        groups = self.optimizer_groups()
        total = self._total_steps()
        if not groups:
            c = optim_config(self.config)
            opt = build_optimizer(self, c)
            sched = build_scheduler(opt, c, total)
            if sched is None:
                return opt
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        self._check_group_coverage(groups)
        optimizers: list[torch.optim.Optimizer] = []
        schedulers: list[dict[str, Any]] = []
        self._group_slots = {}
        for name, modules in groups.items():
            c = self.group_optim_config(name)
            opt = build_optimizer((p for m in modules for p in m.parameters()), c)
            sched = build_scheduler(opt, c, total)
            slot = None
            if sched is not None:
                slot = len(schedulers)
                schedulers.append({"scheduler": sched, "interval": "step"})
            self._group_slots[name] = (len(optimizers), slot)
            optimizers.append(opt)
        return optimizers, schedulers

    def _check_group_coverage(self, groups: Mapping[str, list[nn.Module]]) -> None:
        owner: dict[int, str] = {}
        for name, modules in groups.items():
            for module in modules:
                for p in module.parameters():
                    if id(p) in owner and owner[id(p)] != name:
                        raise ValueError(
                            f"a parameter of {type(self).__name__} is in groups "
                            f"{owner[id(p)]!r} and {name!r}"
                        )
                    owner[id(p)] = name
        orphans = [n for n, p in self.named_parameters() if p.requires_grad and id(p) not in owner]
        if orphans:
            raise ValueError(
                f"{type(self).__name__}: parameters in no optimizer group: {', '.join(orphans[:5])}"
            )

    def group_step(
        self, name: str, closure: Callable[[], Mapping[str, Tensor]]
    ) -> dict[str, Tensor]:
        """One optimizer step of network group ``name`` (manual optimization).

        Only the group's parameters require gradients while ``closure`` runs (Lightning's
        ``toggle_optimizer``); ``closure()`` returns named terms with ``"loss"`` the total to
        minimise. The gradients are clipped by the group's ``clip_grad_norm``, the optimizer
        steps and the group's schedule advances. Returns the terms, detached.
        """
        index, slot = self._group_slots[name]
        optimizers = self.optimizers()
        opt = optimizers[index] if isinstance(optimizers, list) else optimizers
        self.toggle_optimizer(opt)
        try:
            terms = closure()
            opt.zero_grad(set_to_none=True)
            self.manual_backward(terms["loss"])
            clip = self.group_optim_config(name).clip_grad_norm
            if clip:
                # Lightning annotates an Optimizer; a LightningOptimizer is one at runtime (its
                # class derives from the wrapped optimizer's), and Lightning's docs pass it here
                self.clip_gradients(
                    opt,  # type: ignore[arg-type]
                    gradient_clip_val=clip,
                    gradient_clip_algorithm="norm",
                )
            if index == 0:
                opt.step()  # advances trainer.global_step
            else:
                # the same step through the strategy (precision plugin included) without
                # counting it as a training step
                self.trainer.strategy.optimizer_step(opt.optimizer, closure=_no_closure)
        finally:
            self.untoggle_optimizer(opt)
        if slot is not None:
            scheduler = self.trainer.lr_scheduler_configs[slot].scheduler
            # configure_optimizers gave the group build_scheduler's LambdaLR, stepped per step
            assert not isinstance(scheduler, ReduceLROnPlateau)
            scheduler.step()
        return {k: v.detach() for k, v in terms.items()}

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # model.clip_grad_norm applies when trainer.gradient_clip_val is not set
        if gradient_clip_val is None and self.config.clip_grad_norm:
            gradient_clip_val, gradient_clip_algorithm = self.config.clip_grad_norm, "norm"
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def log_terms(self, prefix: str, terms: Mapping[str, Tensor], batch_size: int) -> None:
        """Log ``terms`` as ``prefix/<name>`` (``prefix/loss`` on the progress bar)."""
        parts = {f"{prefix}/{k}": v.detach() for k, v in terms.items() if k != "loss"}
        self.log_dict(parts, batch_size=batch_size)
        if "loss" in terms:
            self.log(f"{prefix}/loss", terms["loss"].detach(), prog_bar=True, batch_size=batch_size)

    # ----------------------------------------------------------------------- shared machinery
    def check_num_samples(self, num_samples: int) -> None:
        """Raise a :class:`UserError` for ``num_samples`` this method cannot give."""
        if num_samples < 1:
            raise UserError(f"num_samples must be at least 1, got {num_samples}")
        if num_samples > 1 and not self.stochastic:
            raise UserError(
                f"method '{self.config.name}' is deterministic: it gives one output per input; "
                "ask for 1 sample"
            )

    def attach_landmark_model(self, model: Any) -> None:
        """Score ``val/lmd``/``test/lmd`` of generated frames with ``model`` (None detaches).

        ``model`` maps ``N,3,H,W`` in [0,1] to ``N,68,2`` in those frames' pixels (or to a
        ``(landmarks, valid)`` pair), like :class:`~talking_faces.metrics.MetricSuite`'s
        ``landmark_model``; a module with ``predict_landmarks`` (the landmark expert) works too.
        """
        if isinstance(model, torch.nn.Module):
            model.eval().requires_grad_(False)
        self._landmark_model = [model] if model is not None else []

    def _landmarks(self, frames: Tensor) -> tuple[Tensor, Tensor | None]:
        """Landmarks ``B,T,68,2`` (and validity ``B,T`` or None) of ``B,T,3,H,W`` frames."""
        detector = self._landmark_model[0]
        if isinstance(detector, torch.nn.Module):
            detector.to(frames.device)
        flat = frames.flatten(0, 1)
        out = (
            detector.predict_landmarks(flat)
            if hasattr(detector, "predict_landmarks")
            else (detector(flat))
        )
        points, valid = out if isinstance(out, tuple) else (out, None)
        points = points.float().view(*frames.shape[:2], 68, 2)
        return points, None if valid is None else valid.view(frames.shape[:2])

    def eval_generator(self, batch_idx: int, dataloader_idx: int = 0) -> torch.Generator:
        """The fixed-seed generator used for sample ``batch_idx`` in validation/test/predict."""
        seed = self.config.eval_seed + 1_000_003 * dataloader_idx + batch_idx
        return torch.Generator(device=self.device).manual_seed(seed)

    def noise_generator(self, generator: torch.Generator | None) -> torch.Generator | None:
        """``generator`` if given, else the training generator while fitting (else global RNG)."""
        return generator if generator is not None else self.train_generator

    def on_fit_start(self) -> None:
        gen = torch.Generator(device=self.device)
        # torch.initial_seed() is the run seed set by fit; ranks draw different noise
        gen.manual_seed(torch.initial_seed() + self.global_rank)
        if self._train_generator_state is not None:
            gen.set_state(self._train_generator_state)
            self._train_generator_state = None
        self.train_generator = gen

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.train_generator is not None:
            checkpoint["train_generator_state"] = self.train_generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # applied in on_fit_start, once the module is on its device
        self._train_generator_state = checkpoint.get("train_generator_state")

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        """The loss of automatic optimization (methods with :meth:`optimizer_groups` override it
        with :meth:`group_step` calls and return None)."""
        terms = self.loss(batch)
        self.log_terms("train", terms, batch["frames"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """The loss terms (``val/<term>``), PSNR and SSIM of one fixed-seed sample per clip, and
        mouth LMD when a landmark model is attached."""
        stage = "val"
        bs = batch["frames"].shape[0]
        gen = self.eval_generator(batch_idx)
        terms = self.loss(batch, generator=gen)
        self.log_dict({f"{stage}/{k}": v for k, v in terms.items()}, batch_size=bs, sync_dist=True)
        frames = self.generate(batch["identity"], batch["audio"], 1, generator=gen)[:, 0]
        psnr, ssim, lmd = self.val_psnr, self.val_ssim, self.val_lmd
        fake, real = frames.float(), batch["frames"].float()
        psnr.update(fake, real)
        ssim.update(fake, real)
        self.log(f"{stage}/psnr", psnr, batch_size=bs, prog_bar=stage == "val")
        self.log(f"{stage}/ssim", ssim, batch_size=bs)
        if self._landmark_model:
            points, valid = self._landmarks(fake)
            scale = LMD_SIZE / fake.shape[-1]
            lmd.update(
                points * scale, batch["landmarks"].float() * scale, valid, batch["landmarks_valid"]
            )
            self.log(f"{stage}/lmd", lmd, batch_size=bs)
        return {"generated": frames.detach()}

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Generated clips ``B,K,T,3,H,W`` with ``K = config.predict_samples``."""
        gen = self.eval_generator(batch_idx, dataloader_idx)
        return self.generate(
            batch["identity"], batch["audio"], self.config.predict_samples, generator=gen
        )


def _no_closure() -> None:
    return None

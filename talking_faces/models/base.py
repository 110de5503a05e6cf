"""The interface every talking-face method implements, and what they share.

TalkingFaceDataModule -> Batch -> **TalkingFaceModule** (training_step, generate) -> evaluate

A method subclasses :class:`TalkingFaceModule`, declares its hyper-parameters as a ``Config``
dataclass deriving from :class:`ModelConfig`, and implements :meth:`~TalkingFaceModule.loss`
(a dict of named terms with ``"loss"`` the total) and :meth:`~TalkingFaceModule.generate`. Methods
that need several optimizers (GANs) set ``automatic_optimization = False`` and override
``training_step``. Validation, test and prediction are shared here and go through ``generate()``,
so what is scored is what a user gets from ``talking-faces generate``.

Validation is kept light: the method's own loss (``val/loss``, the default checkpoint monitor) and
PSNR/SSIM of one sample per clip drawn with a fixed seed, plus mouth LMD (``val/lmd``, in pixels of
a 128 px crop) when a landmark model is attached (:meth:`TalkingFaceModule.attach_landmark_model`;
``fit`` attaches the dataset's trained landmark expert when there is one). The full protocol (LSE,
diversity, the fixed test pairs) is ``talking-faces evaluate``'s job.

The constructor takes the model section of the run config (a mapping or the ``Config`` dataclass)
and saves it as the hyper-parameters, so a checkpoint alone rebuilds the model:
``MODELS[name].load_from_checkpoint(path)`` or :func:`talking_faces.models.load_model`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning as L
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import Tensor

from talking_faces.errors import UserError
from talking_faces.metrics import LandmarkDistance, VideoPSNR, VideoSSIM

#: crop size in whose pixels validation LMD is reported (PAPERS.md)
LMD_SIZE = 128
#: optimizers a model config may name
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")


def build_optimizer(module: torch.nn.Module, c: Any) -> torch.optim.Optimizer:
    """The optimizer named by ``c.optimizer`` (one of :data:`OPTIMIZERS`) over ``module``'s
    trainable parameters, with ``c``'s ``lr``, ``betas``, ``eps``, ``alpha``, ``momentum`` and
    ``weight_decay`` (the fields of :class:`ModelConfig`); shared by methods and experts."""
    params = [p for p in module.parameters() if p.requires_grad]
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


@dataclass
class ModelConfig:
    """Hyper-parameters every method has. Methods extend it with their own fields.

    ``image_size``, ``audio_window`` and ``audio_features`` describe the data the network is
    built for; ``fit`` fills them from the prepared dataset when they are ``None`` and refuses a
    dataset that disagrees with values given explicitly.
    """

    name: str = "?"
    #: square frame size in pixels
    image_size: int | None = None
    #: audio-feature rows per frame window (100 Hz rows; 28 = 0.28 s)
    audio_window: int | None = None
    #: coefficients per audio-feature row (12 for MFCC without c0)
    audio_features: int | None = None
    #: one of OPTIMIZERS
    optimizer: str = "adam"
    lr: float = 2e-4
    weight_decay: float = 0.0
    #: Adam/AdamW betas
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    #: RMSprop smoothing constant
    alpha: float = 0.99
    eps: float = 1e-8
    #: SGD/RMSprop momentum
    momentum: float = 0.0
    #: seed of the samples drawn for validation/test/predict (per batch: seed + batch index)
    eval_seed: int = 0
    #: samples per input in ``predict_step``
    predict_samples: int = 1


def make_config(cls: type, config: Any = None, **overrides: Any) -> Any:
    """Validated ``cls`` instance from a ``cls``, a mapping (dict or OmegaConf) or None.

    Unknown keys and values of the wrong type raise :class:`UserError` naming the key.
    """
    schema = OmegaConf.structured(cls)
    OmegaConf.set_struct(schema, True)
    if config is None:
        values: Any = {}
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        values = OmegaConf.structured(config)
    elif isinstance(config, Mapping) or OmegaConf.is_dict(config):
        values = config
    else:
        raise TypeError(f"config must be a {cls.__name__}, a mapping or None, not {type(config)}")
    try:
        merged = OmegaConf.merge(schema, values, overrides)
    except OmegaConfBaseException as exc:
        from talking_faces.config import explain_omegaconf_error

        raise UserError(explain_omegaconf_error(exc, prefix="model.")) from None
    return OmegaConf.to_object(merged)


class TalkingFaceModule(L.LightningModule):
    """Base of every method: ``generate(identity, audio) -> B,K,T,3,H,W`` and shared evaluation.

    Subclasses set ``Config`` (a :class:`ModelConfig` subclass), ``stochastic`` (whether
    ``generate`` can give several different samples per input) and implement :meth:`loss` and
    :meth:`generate`.
    """

    Config: ClassVar[type] = ModelConfig
    #: True when ``generate`` draws samples; deterministic methods reject ``num_samples > 1``
    stochastic: ClassVar[bool] = False

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__()
        cfg = make_config(self.Config, config, **overrides)
        for key in ("image_size", "audio_window", "audio_features"):
            if getattr(cfg, key, 0) is None:
                raise UserError(
                    f"model.{key} is not set; build the model through `talking-faces fit` (which "
                    f"reads it from the dataset) or pass {key}=..."
                )
        if cfg.optimizer not in OPTIMIZERS:
            raise UserError(
                f"model.optimizer={cfg.optimizer!r} is not one of {', '.join(OPTIMIZERS)}"
            )
        self.config = cfg
        # plain containers only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters({"config": dataclasses.asdict(cfg)})
        #: seeds the sampling inside the training loss; its state is saved in checkpoints so a
        #: resumed run draws the same noise as an uninterrupted one (see on_fit_start)
        self.train_generator: torch.Generator | None = None
        self._train_generator_state: Tensor | None = None
        self.val_psnr = VideoPSNR()
        self.val_ssim = VideoSSIM()
        self.test_psnr = VideoPSNR()
        self.test_ssim = VideoSSIM()
        self.val_lmd = LandmarkDistance()
        self.test_lmd = LandmarkDistance()
        # kept out of the module tree so it is neither trained nor saved with the model
        self._landmark_model: list[Any] = []
        self._metric_suite: list[Any] = []

    # ----------------------------------------------------------------- what a method provides
    def loss(self, batch: Mapping[str, Any], generator: torch.Generator | None = None) -> dict:
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

    def attach_metric_suite(self, suite: Any) -> None:
        """Score ``test`` with a :class:`~talking_faces.metrics.MetricSuite` (None detaches).

        ``trainer.test`` then logs every metric of the suite as ``test/<name>``.
        """
        self._metric_suite = [suite] if suite is not None else []

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

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        terms = self.loss(batch)
        bs = batch["frames"].shape[0]
        parts = {f"train/{k}": v.detach() for k, v in terms.items() if k != "loss"}
        self.log_dict(parts, batch_size=bs)
        self.log("train/loss", terms["loss"].detach(), prog_bar=True, batch_size=bs)
        return terms["loss"]

    def _evaluate(self, batch: Mapping[str, Any], batch_idx: int, stage: str) -> dict:
        bs = batch["frames"].shape[0]
        gen = self.eval_generator(batch_idx)
        terms = self.loss(batch, generator=gen)
        self.log_dict({f"{stage}/{k}": v for k, v in terms.items()}, batch_size=bs, sync_dist=True)
        frames = self.generate(batch["identity"], batch["audio"], 1, generator=gen)[:, 0]
        psnr, ssim, lmd = (
            (self.val_psnr, self.val_ssim, self.val_lmd)
            if stage == "val"
            else (self.test_psnr, self.test_ssim, self.test_lmd)
        )
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
        if stage == "test" and self._metric_suite:
            suite = self._metric_suite[0].to(fake.device)
            suite.update(
                fake,
                real,
                batch["waveform"],
                batch["landmarks"],
                batch["landmarks_valid"],
                list(batch.get("clip_id") or []),
            )
        return {"generated": frames.detach()}

    def on_test_epoch_end(self) -> None:
        if self._metric_suite:
            scores = self._metric_suite[0].compute()
            for key, value in scores.items():
                self.log(f"test/suite_{key}", float(value), sync_dist=False)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict:
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict:
        return self._evaluate(batch, batch_idx, "test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0):
        """Generated clips ``B,K,T,3,H,W`` with ``K = config.predict_samples``."""
        gen = self.eval_generator(batch_idx, dataloader_idx)
        return self.generate(
            batch["identity"], batch["audio"], self.config.predict_samples, generator=gen
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self, self.config)

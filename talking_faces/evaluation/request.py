"""What one evaluation is asked to do, checked, and the checkpoint it scores, loaded.

``talking-faces evaluate`` arguments -> **EvaluationRequest** -> **check_request** (one-line
errors before anything is loaded) -> **load_method** (the checkpoint's method on the device, its
run config, its generation options applied; None for a baseline) -> **window_config** (the audio
features the method was trained on) -> the scoring of :mod:`talking_faces.evaluation.loop`
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talking_faces.data.dataset import PreparedDataset, WindowConfig
from talking_faces.errors import UserError
from talking_faces.names import BASELINES, GROUND_TRUTH
from talking_faces.utils.io import sha256_file

if TYPE_CHECKING:
    from talking_faces.models.base import TalkingFaceModule

#: what can drive generation (``--drive``)
DRIVES = ("audio", "video")
#: the data-config keys that choose a model's audio features
AUDIO_KEYS = ("audio_feature", "audio_window", "audio_pad", "drop_c0")


@dataclass
class EvaluationRequest:
    """What ``talking-faces evaluate`` was asked to do."""

    data: str
    out: str
    ckpt: str | None = None
    baseline: str | None = None
    split: str = "test"
    protocol: str = "default"
    syncnet: str | None = None
    landmarks_model: str | None = None
    syncnet_public: str | None = None
    #: ArcFace backbone for protocols with ``identity: arcface`` (default: the weights folder's)
    arcface: str | None = None
    batch_size: int = 8
    num_workers: int = 0
    num_samples: int = 1
    seed: int = 0
    audio_shift: int = 0
    device: str = "cpu"
    limit: int | None = None
    #: what drives generation: "audio", or "video" for methods that can be driven by frames (the
    #: pair's real frames then drive the identity)
    drive: str = "audio"
    #: test-time options of the method (its ``generation_options``), e.g. {"wid_scale": 1.5}
    options: dict[str, Any] = field(default_factory=dict)
    #: sample videos: the first ``videos`` pairs as ``<out stem>.videos/<pair>.mp4``
    videos: int = 1
    #: recorded as the results' ``provenance`` (e.g. the sweep and trial that asked for them)
    provenance: dict[str, Any] | None = None
    #: processes the pairs are sharded over (:mod:`talking_faces.evaluation.distributed`)
    devices: int = 1
    #: a folder of videos made elsewhere, one per test pair, scored in place of a method
    #: (:mod:`talking_faces.evaluation.generated`)
    generated: str | None = None
    #: the row's label and method name of a ``generated`` folder (default: the folder's name)
    label: str | None = None


def check_request(req: EvaluationRequest) -> None:
    """Raise :class:`UserError` (one line) for a request that cannot be carried out."""
    sources = [s for s in (req.ckpt, req.baseline, req.generated) if s is not None]
    if len(sources) != 1:
        raise UserError(
            "give either a checkpoint CKPT, --baseline NAME or --generated DIR (exactly one)"
        )
    if req.label is not None and req.generated is None:
        raise UserError("--label names the row of a --generated folder; it needs --generated")
    if req.generated is not None and (req.num_samples > 1 or req.drive != "audio" or req.options):
        raise UserError(
            "--samples, --drive and --option apply to a model checkpoint, not to --generated"
        )
    if req.baseline is not None and req.baseline not in BASELINES:
        raise UserError(f"unknown baseline {req.baseline!r}; choose {', '.join(BASELINES)}")
    if req.audio_shift and req.baseline != GROUND_TRUTH:
        raise UserError(f"--audio-shift applies to --baseline {GROUND_TRUTH} only")
    if req.num_samples < 1 or req.batch_size < 1:
        raise UserError("--samples and --batch-size must be at least 1")
    if req.num_samples > 1 and req.baseline is not None:
        raise UserError("--samples > 1 needs a model checkpoint; baselines have one output")
    if req.limit is not None and req.limit < 1:
        raise UserError("--limit must be at least 1")
    if req.devices < 1:
        raise UserError("--devices must be at least 1")
    if req.videos < 0:
        raise UserError("--videos must be 0 or more")
    if req.drive not in DRIVES:
        raise UserError(f"--drive must be audio or video, got {req.drive!r}")
    if req.baseline is not None and (req.drive != "audio" or req.options):
        raise UserError("--drive and --option apply to a model checkpoint, not to a baseline")


def label(req: EvaluationRequest, run_config: dict[str, Any]) -> str:
    """The row label of the results: the baseline (and its audio shift); a generated folder's
    ``--label`` or name; else the run's name (or the checkpoint's stem) with the drive and
    options that are not the defaults."""
    if req.baseline is not None:
        return req.baseline + (f" (audio {req.audio_shift:+d} frames)" if req.audio_shift else "")
    if req.generated is not None:
        return req.label or Path(req.generated).resolve().name
    name = str(run_config.get("name") or (run_config.get("model") or {}).get("name") or "")
    text = name or Path(str(req.ckpt)).stem
    notes = [f"{req.drive}-driven"] if req.drive != "audio" else []
    notes += [f"{k}={v}" for k, v in sorted(req.options.items())]
    return text + (f" ({', '.join(notes)})" if notes else "")


# ----------------------------------------------------------------------------- the method
@dataclass
class Method:
    """The checkpoint under evaluation, loaded (:func:`load_method`)."""

    model: TalkingFaceModule
    #: the resolved config it was trained with ({} when the checkpoint has none)
    run_config: dict[str, Any]
    #: ``{"path", "sha256"}`` of the checkpoint file
    checkpoint: dict[str, str]
    #: the generation options applied, as results record them
    options: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.model.config.name)


def _option_value(text: Any, current: Any) -> Any:
    """``--option key=text`` as the type of the option's current value (``true``/``false``,
    ``1``/``0``, ``yes``/``no`` for a bool: ``bool("false")`` would be True)."""
    if isinstance(current, bool):
        word = str(text).strip().lower()
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off"):
            return False
        raise ValueError(text)
    return type(current)(text)


def apply_generation_options(model: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Set test-time options on ``model.config`` (only the method's ``generation_options``);
    return the resolved options, as results record them."""
    allowed = tuple(getattr(model, "generation_options", ()))
    applied: dict[str, Any] = {}
    for key, value in options.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise UserError(
                f"--option {key}: not a test-time option of method '{model.config.name}' "
                f"(its options: {known})"
            )
        current = getattr(model.config, key)
        try:
            value = _option_value(value, current)
        except (TypeError, ValueError):
            raise UserError(
                f"--option {key}={value!r}: expected a {type(current).__name__}"
            ) from None
        setattr(model.config, key, value)
        applied[key] = value
    return applied


def _load_model(path: str, device: str) -> tuple[Any, dict[str, Any]]:
    from talking_faces.models import TalkingFaceModule
    from talking_faces.registry import load_model

    model = load_model(path)
    if not isinstance(model, TalkingFaceModule):
        raise UserError(
            f"{path} holds the {model.config.name!r} expert, not a talking-face method; pass it "
            f"with --{'syncnet' if model.config.name == 'syncnet' else 'landmarks-model'} instead"
        )
    model = model.to(device).eval()
    run_config = getattr(model, "run_config", None) or {}
    return model, run_config


def load_method(req: EvaluationRequest, prepared: PreparedDataset) -> Method | None:
    """The method of ``req.ckpt`` on ``req.device`` with ``req.options`` applied (None for a
    baseline).

    Raises:
        UserError: not a method's checkpoint, more samples than it draws, frames of another size
            than the dataset's, a drive or option it does not take.
    """
    if req.ckpt is None:
        return None
    model, run_config = _load_model(req.ckpt, req.device)
    model.check_num_samples(req.num_samples)
    size = getattr(model.config, "image_size", None)
    if size is not None and int(size) != int(prepared.meta["size"]):
        raise UserError(
            f"{req.ckpt} generates {size} px frames but {req.data} holds "
            f"{prepared.meta['size']} px crops; evaluate it on a dataset prepared with "
            f"--size {size}"
        )
    checkpoint = {"path": str(req.ckpt), "sha256": sha256_file(req.ckpt)}
    if req.drive not in model.drives:
        raise UserError(
            f"method '{model.config.name}' cannot be driven by {req.drive} (it takes "
            f"{', '.join(model.drives)})"
        )
    options = apply_generation_options(model, dict(req.options))
    return Method(model=model, run_config=run_config, checkpoint=checkpoint, options=options)


def window_config(method: Method | None) -> WindowConfig:
    """Audio features as the method was trained on them (defaults for baselines)."""
    run_config = method.run_config if method is not None else {}
    data = dict(run_config.get("data") or {})
    window = WindowConfig()
    kwargs = {k: data[k] for k in AUDIO_KEYS if k in data}
    cfg = getattr(method.model, "config", None) if method is not None else None
    if cfg is not None and getattr(cfg, "audio_window", None):
        kwargs["audio_window"] = int(cfg.audio_window)
    return dataclasses.replace(window, **kwargs)


def audio_record(window: WindowConfig) -> dict[str, Any]:
    """The audio features of ``window``, as results record them."""
    return {k: getattr(window, k) for k in AUDIO_KEYS}


__all__ = [
    "EvaluationRequest",
    "Method",
    "apply_generation_options",
    "audio_record",
    "check_request",
    "label",
    "load_method",
    "window_config",
]

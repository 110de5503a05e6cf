"""Run configuration: typed schemas and the composition of YAML files and ``key=value`` overrides.

``talking-faces fit CONFIG... [key=value ...]`` ->
:func:`talking_faces.training.runconfig.load_config`
-> **compose_config** -> validated DictConfig -> :mod:`talking_faces.training.fit` (datamodule,
model, trainer, run folder).

A run config is composed from at most a base file and one file per axis (``experiments/base.yaml``,
``experiments/data/*.yaml``, ``experiments/model/*.yaml``, ``experiments/trainer/*.yaml``), merged
left to right, then the command-line overrides. Every section has a dataclass schema and the result
is in OmegaConf struct mode. The ``model`` section is validated against the ``Config`` dataclass of
the class that ``model.name`` selects; this module does not know the registry (it sits below the
models): :func:`compose_config` is handed a lookup, and
:func:`talking_faces.training.runconfig.load_config` passes the registry's. Configs never hold
import paths. An unknown key, in a file or on the command line, is a
:class:`~talking_faces.errors.UserError` naming the key and the closest valid
one; a value of the wrong type names the key and the expected type. :func:`make_config` validates
one dataclass section the same way (the constructors of methods and experts use it).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from talking_faces.config.choices import AudioFeature, AudioPad, MonitorMode
from talking_faces.config.files import resolve_path
from talking_faces.errors import UserError


@dataclass
class DataConfig:
    """Arguments of :class:`talking_faces.data.TalkingFaceDataModule` (seed: the run's)."""

    #: prepared dataset (folder or URL the shard reader understands)
    root: str = MISSING
    #: frames per training window (T), or "clip" for whole clips
    num_frames: int | str = 8
    batch_size: int = 4
    num_workers: int = 0
    #: reference face: "random" (same clip, outside the window), "first", "other-clip",
    #: "first-frame" (frame 0, every window starting there: ldm's paper setup)
    identity: str = "random"
    #: mfcc (python_speech_features), logmel, or mfcc_davs (the davs authors' MATLAB MFCC)
    audio_feature: AudioFeature = AudioFeature.mfcc
    #: feature rows (100 Hz) per frame window, centred on the frame
    audio_window: int = 28
    #: rows outside the clip: repeat the edge row, or zeros; zero_waveform: the ldm authors'
    #: MFCC of the waveform zero-padded by 1,965 samples (audio_feature mfcc only)
    audio_pad: AudioPad = AudioPad.edge
    #: drop MFCC c0 (log energy), as ldm does
    drop_c0: bool = True
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    pin_memory: bool = False
    #: where LitData caches chunks streamed from a URL (None: its default)
    cache_dir: str | None = None


@dataclass
class TrainerConfig:
    """Arguments of ``lightning.Trainer`` (plus ``channels_last``)."""

    accelerator: str = "cpu"
    devices: int | str = 1
    #: "auto", "ddp", "ddp_spawn", "fsdp", ...
    strategy: str = "auto"
    num_nodes: int = 1
    #: "32-true", "bf16-mixed", "16-mixed", ...; "auto": bf16-mixed where the device computes
    #: bf16 natively (AVX512-BF16/AMX CPUs, bf16 GPUs), else 32-true (utils/hardware.py)
    precision: str = "32-true"
    max_steps: int = -1
    max_epochs: int | None = None
    #: wall-clock limit "DD:HH:MM:SS" (e.g. "00:00:10:00"); stops with a checkpoint
    max_time: str | None = None
    #: validate every N training steps (int) or fraction of an epoch (float); None: once an epoch
    val_check_interval: int | float | None = None
    check_val_every_n_epoch: int | None = 1
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    num_sanity_val_steps: int = 0
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 50
    #: model weights and image inputs in channels-last memory format (faster convs on GPU)
    channels_last: bool = False
    deterministic: bool = False


@dataclass
class LoggerConfig:
    """Loggers: CSV (``metrics.csv`` in the run folder) always; W&B and TensorBoard on request."""

    wandb: bool = False
    wandb_project: str = "talking_faces"
    wandb_entity: str | None = None
    wandb_tags: list[str] = field(default_factory=list)
    tensorboard: bool = False
    #: write sample videos (real | generated, audio muxed) every N validations; 0: never
    sample_every_n_val: int = 1
    #: clips per sample-video round
    sample_videos: int = 2


@dataclass
class CheckpointConfig:
    """Checkpoints in ``RUN/checkpoints``: ``last.ckpt`` and the best by ``monitor``."""

    monitor: str = "val/loss"
    #: "min" or "max"
    mode: MonitorMode = MonitorMode.min
    save_top_k: int = 1
    #: also refresh last.ckpt every N training steps (None: at each validation and at the end)
    every_n_train_steps: int | None = None


@dataclass
class Config:
    """A whole run. The run folder is ``out/name`` (``name`` defaults to ``model.name``)."""

    seed: int = 0
    out: str = "runs"
    name: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    #: validated against MODELS[model.name].Config
    model: Any = field(default_factory=lambda: {"name": MISSING})
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    #: "last" resumes the run folder's last.ckpt (from scratch if there is none); or a .ckpt path
    ckpt_path: str | None = None


def explain_omegaconf_error(exc: OmegaConfBaseException, prefix: str = "") -> str:
    """One line from an OmegaConf validation error: the full key and what is wrong."""
    key = getattr(exc, "full_key", None) or ""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    msg = msg.replace("could not be converted to", "is not a valid")
    return f"config key '{prefix}{key}': {msg}" if key else f"config: {msg}"


def _is_open(node: Any) -> bool:
    """True when a schema node accepts arbitrary keys (a plain dict field)."""
    return isinstance(node, DictConfig) and node._metadata.object_type in (None, dict)


def unlock_open_dicts(node: DictConfig) -> None:
    """Let plain-dict fields (e.g. ``model.optim``) take new keys in a struct-mode schema."""
    for k in list(node.keys()):
        child = node._get_node(k)
        if not isinstance(child, DictConfig) or child._is_missing():
            continue
        if _is_open(child):
            OmegaConf.set_struct(child, False)
        else:
            unlock_open_dicts(child)


def all_keys(node: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    # iterate keys(): `in`/iteration on a DictConfig skips keys whose value is missing (???)
    for k in list(node.keys()):
        full = prefix + str(k)  # a schema's keys are its dataclass's field names
        keys.append(full)
        child = node._get_node(k)
        if isinstance(child, DictConfig) and not _is_open(child) and not child._is_missing():
            keys += all_keys(child, full + ".")
    return keys


def _closest(key: str, full: str, siblings: Iterable[str], everything: list[str]) -> str | None:
    sib = list(siblings)
    prefix = full[: len(full) - len(key)]
    match = difflib.get_close_matches(key, sib, n=1, cutoff=0.6)
    if match:
        return prefix + match[0]
    # a key given at the wrong depth, e.g. `max_steps` for `trainer.max_steps`
    same_leaf = [k for k in everything if k.rsplit(".", 1)[-1] == key]
    if same_leaf:
        return same_leaf[0]
    match = difflib.get_close_matches(full, everything, n=1, cutoff=0.6)
    return match[0] if match else None


def check_keys(src: Any, schema: DictConfig, label: str, everything: list[str], prefix="") -> None:
    if not isinstance(src, dict):
        return
    known = list(schema.keys())
    for key, value in src.items():
        full = f"{prefix}{key}"
        if key not in known:
            close = _closest(str(key), full, [str(k) for k in known], everything)
            hint = f" (did you mean '{close}'?)" if close else ""
            raise UserError(f"unknown config key '{full}'{hint} in {label}")
        child = schema._get_node(key)
        if isinstance(child, DictConfig) and not _is_open(child) and isinstance(value, dict):
            check_keys(value, child, label, everything, full + ".")


def _container(cfg: DictConfig, **options: Any) -> dict:
    """``OmegaConf.to_container(cfg, **options)``: a DictConfig converts to a dict
    (``to_container`` is annotated with what every kind of node converts to)."""
    out = OmegaConf.to_container(cfg, **options)
    assert isinstance(out, dict)
    return out


def read_yaml(path: str) -> dict:
    path = os.fspath(resolve_path(path))
    if not os.path.isfile(path):
        raise UserError(f"config file {path} does not exist; pass YAML files under experiments/")
    try:
        data = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise UserError(
            f"config file {path}{line} is not valid YAML; fix it and run again"
        ) from None
    if not isinstance(data, DictConfig):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    return _container(data, resolve=False)


def parse_override(item: str) -> dict:
    key = item.split("=", 1)[0].strip()
    if "=" not in item or not key or any(not p for p in key.split(".")):
        raise UserError(f"override '{item}' is not key=value (e.g. trainer.max_steps=100)")
    try:
        parsed = OmegaConf.from_dotlist([item])
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        msg = str(exc).splitlines()[0]
        raise UserError(f"override '{item}' cannot be parsed: {msg}") from None
    return _container(parsed, resolve=False)


def format_value(value: Any) -> str:
    """A parameter value as the text of a ``key=value`` override (OmegaConf reads it back)."""
    if isinstance(value, str):
        return value if re.fullmatch(r"[\w./:+-]+", value) else json.dumps(value)
    return json.dumps(value)


def _merge_plain(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_plain(out[k], v)
        else:
            out[k] = v
    return out


def make_config(cls: type, config: Any = None, **overrides: Any) -> Any:
    """Validated ``cls`` instance (a dataclass) from a ``cls``, a mapping (dict or OmegaConf) or
    None, with keyword ``overrides`` on top.

    Unknown keys and values of the wrong type raise :class:`UserError` naming the key.
    """
    schema = OmegaConf.structured(cls)
    OmegaConf.set_struct(schema, True)
    unlock_open_dicts(schema)
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
        raise UserError(explain_omegaconf_error(exc, prefix="model.")) from None
    return OmegaConf.to_object(merged)


def schema_for(model_config: type | None) -> DictConfig:
    """The struct-mode schema of a run whose ``model`` section is the dataclass ``model_config``
    (None: the model is unset)."""
    schema = OmegaConf.structured(Config)
    if model_config is not None:
        schema.model = OmegaConf.structured(model_config)
    OmegaConf.set_struct(schema, True)
    unlock_open_dicts(schema)
    return schema


def compose_config(
    paths: Sequence[str | os.PathLike[str]],
    overrides: Sequence[str],
    model_config: Callable[[str], type],
) -> DictConfig:
    """Compose YAML files (left to right) and ``key=value`` overrides into a validated config.

    ``model_config(name)`` gives the ``Config`` dataclass of model ``name`` (the registry's
    business: :func:`talking_faces.training.runconfig.load_config` passes it). The result is in
    struct mode. Required values that nobody set (``data.root``) stay missing;
    :func:`require_complete` checks them before a run starts.

    Raises:
        UserError: a missing or malformed file, an unknown key (naming the closest valid one), a
            value of the wrong type, an unknown ``model.name``.
    """
    sources: list[tuple[str, dict]] = [(os.fspath(p), read_yaml(os.fspath(p))) for p in paths]
    sources += [(f"override '{o}'", parse_override(o)) for o in overrides]
    plain: dict = {}
    for _, src in sources:
        plain = _merge_plain(plain, src)
    model_section = plain.get("model")
    name = model_section.get("name") if isinstance(model_section, dict) else None
    if name is not None and not isinstance(name, str):
        raise UserError(f"config key 'model.name' must be a string, got {name!r}")
    if model_section is not None and not isinstance(model_section, dict):
        raise UserError("config key 'model' must be a mapping with a 'name'")
    schema = schema_for(model_config(name) if name is not None else None)
    if name is None and isinstance(model_section, dict) and model_section:
        raise UserError(
            f"config keys under 'model' ({', '.join(sorted(model_section))}) need model.name; "
            "add an experiments/model/*.yaml file or model.name=..."
        )
    everything = all_keys(schema)
    cfg = schema
    for label, src in sources:
        check_keys(src, schema, label, everything)
        try:
            merged = OmegaConf.merge(cfg, src)
        except OmegaConfBaseException as exc:
            raise UserError(f"{explain_omegaconf_error(exc)} (in {label})") from None
        # merging into a DictConfig gives a DictConfig (merge is annotated with every node kind)
        assert isinstance(merged, DictConfig)
        cfg = merged
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise UserError(explain_omegaconf_error(exc)) from None
    _check_choices(cfg)
    OmegaConf.set_struct(cfg, True)
    unlock_open_dicts(cfg)
    return cfg


def _check_choices(cfg: DictConfig) -> None:
    for key in ("sample_every_n_val", "sample_videos"):
        if cfg.logger[key] < 0:
            raise UserError(f"config key 'logger.{key}' must be >= 0")


def require_complete(cfg: DictConfig) -> None:
    """Raise a :class:`UserError` naming the first required key that has no value."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = missing[0]
        raise UserError(
            f"config key '{key}' has no value; set it in a YAML file or pass {key}=... "
            + ("(a prepared dataset folder)" if key == "data.root" else "")
        )


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what the run folder keeps)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers."""
    return _container(cfg, resolve=True, throw_on_missing=False, enum_to_str=True)

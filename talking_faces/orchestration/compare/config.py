"""The compare config: what ``talking-faces compare`` runs, validated before anything runs.

``experiments/compare/*.yaml`` (+ its ``quick:`` section with ``--quick``) + ``key=value``
overrides -> **load_compare_config** -> :class:`CompareConfig` -> the stage plan
(:mod:`talking_faces.orchestration.compare.plan`)

A compare config names the data (``synth:`` writes the built-in synthetic corpus; or ``raw:``, a
raw GRID / LRW / folder corpus), how it is prepared, the two evaluation experts, one preset per
method (fit YAML files, a step budget, overrides, K samples for evaluation), the evaluation
protocol and reference rows, and the estimates the progress line uses. Sources merge in this
order: the file, its ``quick:`` section (``--quick``), the command line's ``key=value``
overrides (``raw=/data/GRID``, ``methods.ldm.max_steps=500``, ``methods.davs=null`` to leave a
method out). An unknown key is an error naming the closest valid one, a value of the wrong type
names the key and the type; this module imports no torch, so a bad config is answered at once.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from talking_faces.config.files import resolve_path
from talking_faces.config.schema import (
    all_keys,
    check_keys,
    explain_omegaconf_error,
    parse_override,
    read_yaml,
    unlock_open_dicts,
)
from talking_faces.errors import UserError
from talking_faces.names import BASELINES

#: the config ``talking-faces compare`` runs when none is named (``make compare``)
DEFAULT_CONFIG = "experiments/compare/synthetic.yaml"
PREPARE_LAYOUTS = ("grid", "lrw", "folder")
LANDMARK_BACKENDS = ("sidecar", "fan", "dlib")


@dataclass
class SynthSection:
    """``talking-faces synth`` arguments (the synthetic corpus; its seed is the config's)."""

    layout: str = "grid"
    speakers: int = 4
    clips: int = 20
    size: int = 128


@dataclass
class PrepareSection:
    """``talking-faces prepare`` arguments (its seed is the config's)."""

    layout: str = "grid"
    landmarks: str = "sidecar"
    size: int = 64
    #: split protocol (None: the layout's default)
    split_protocol: str | None = None
    #: device of the fan landmark backend (None: prepare's default, cpu)
    device: str | None = None
    #: parallel processes (None: prepare's default)
    workers: int | None = None


@dataclass
class ExpertPreset:
    """One evaluation expert: its ``fit`` YAML files and what the compare changes in them."""

    configs: list[str] = MISSING
    #: ``trainer.max_steps`` (None: the YAML's)
    max_steps: int | None = None
    #: further ``fit`` overrides
    overrides: list[str] = field(default_factory=list)
    #: seconds per training step on 2 CPU cores, for the progress line's estimate
    seconds_per_step: float = 0.1


@dataclass
class MethodPreset:
    """One method: its ``fit`` YAML files, step budget, overrides, and samples for evaluation."""

    configs: list[str] = MISSING
    #: the training budget, in steps (never wall-clock time: the same on every machine)
    max_steps: int = MISSING
    #: samples per test pair in evaluation (K >= 2 adds the diversity metrics; stochastic
    #: methods only)
    samples: int = 1
    overrides: list[str] = field(default_factory=list)
    #: seconds per training step on 2 CPU cores, for the progress line's estimate
    seconds_per_step: float = 0.3


@dataclass
class EvaluateSection:
    """``talking-faces evaluate`` settings shared by every method and reference row."""

    protocol: str = "synthetic"
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    #: sample videos per method (the first N test pairs); the report puts them side by side
    videos: int = 4
    batch_size: int = 8
    device: str = "cpu"


@dataclass
class EstimatesSection:
    """Seconds each stage takes on 2 CPU cores, for the progress line's time left (corrected
    by how fast the stages that finished were)."""

    synth: float = 30.0
    prepare: float = 30.0
    #: a command's start (imports) on top of its work
    startup: float = 10.0
    evaluate: float = 20.0
    leaderboard: float = 5.0
    report: float = 20.0


@dataclass
class CompareConfig:
    """One comparison: data, experts, methods, evaluation. The report folder is
    ``compare/<name>`` (``--out`` elsewhere)."""

    name: str = MISSING
    #: seed of synth, prepare's splits and pairs, the experts, and each method's first run
    seed: int = 0
    #: training runs per method, with seeds ``seed, seed + 1, ...`` (each evaluated with its own
    #: seed); the leaderboard gives mean ± std over them (``--seeds N``)
    seeds: int = 1
    #: the prepared data's identity (``meta.json`` identity sha256, or its first 12 or more hex
    #: digits) this config is known to produce; compare says whether this run's matches it
    expected_data_identity: str | None = None
    #: a smoke run (``--quick``): its numbers are marked as not a comparison
    smoke: bool = False
    #: raw corpus folder (real data); leave null when ``synth`` writes the corpus
    raw: str | None = None
    synth: SynthSection | None = None
    prepare: PrepareSection = field(default_factory=PrepareSection)
    experts: dict[str, ExpertPreset] = field(default_factory=dict)
    #: method name (a key of MODELS) -> preset; null leaves the method out
    methods: dict[str, MethodPreset | None] = field(default_factory=dict)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    #: stages at a time (None: --parallel, else from the cores)
    parallel: int | None = None
    estimates: EstimatesSection = field(default_factory=EstimatesSection)
    #: what --quick merges over the rest of the file (same keys)
    quick: Any = None

    @property
    def active_methods(self) -> dict[str, MethodPreset]:
        return {k: v for k, v in self.methods.items() if v is not None}


#: the presets' fields, for "did you mean" on mistyped keys inside methods.<name> / experts.<name>
_PRESETS = {"methods": MethodPreset, "experts": ExpertPreset}


def _check_preset_keys(src: dict, label: str) -> None:
    """Unknown keys inside ``methods.<name>`` / ``experts.<name>`` (a dict of presets, which the
    generic check does not look into), with the closest valid key."""
    for section, cls in _PRESETS.items():
        entries = src.get(section)
        if not isinstance(entries, dict):
            continue
        known = [f.name for f in fields(cls)]
        for name, preset in entries.items():
            if not isinstance(preset, dict):
                continue
            for key in preset:
                if key not in known:
                    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                    hint = f" (did you mean '{section}.{name}.{close[0]}'?)" if close else ""
                    raise UserError(f"unknown config key '{section}.{name}.{key}'{hint} in {label}")


def _schema() -> DictConfig:
    schema = OmegaConf.structured(CompareConfig)
    OmegaConf.set_struct(schema, True)
    unlock_open_dicts(schema)  # methods / experts take any name; quick is a plain mapping
    return schema


def load_compare_config(
    path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = (), quick: bool = False
) -> CompareConfig:
    """The validated compare config of ``path`` (+ its ``quick:`` section) + ``overrides``.

    Raises:
        UserError: a missing or malformed file, an unknown key (naming the closest valid one), a
            value of the wrong type or out of range, a required value not set (``raw`` of the
            real-data configs: pass ``raw=/path/to/corpus``), ``--quick`` on a file without a
            ``quick:`` section.
    """
    path = os.fspath(resolve_path(path))
    if not os.path.isfile(path):
        raise UserError(
            f"compare config {path} does not exist; pass a file under experiments/compare/ "
            "(a packaged one, e.g. experiments/compare/grid.yaml, or your own path)"
        )
    schema = _schema()
    everything = all_keys(schema)
    file = read_yaml(path)
    sources: list[tuple[str, dict]] = [(path, file)]
    if quick:
        section = file.get("quick")
        if not isinstance(section, dict) or not section:
            raise UserError(f"{path} has no quick: section, which --quick merges; add one")
        sources.append((f"{path} (quick:)", section))
    sources += [(f"override '{o}'", parse_override(o)) for o in overrides]
    cfg: Any = schema
    for label, src in sources:
        check_keys(src, schema, label, everything)
        _check_preset_keys(src, label)
        try:
            cfg = OmegaConf.merge(cfg, src)
        except OmegaConfBaseException as exc:
            raise UserError(f"{explain_omegaconf_error(exc)} (in {label})") from None
    if quick:
        cfg.smoke = True
    missing = sorted(OmegaConf.missing_keys(cfg))
    if "raw" in missing or (cfg.raw is None and cfg.synth is None):
        layout = cfg.prepare.layout
        raise UserError(
            f"compare config {path} needs the raw dataset's folder: pass raw=/path/to/it (the "
            f"{layout} corpus as downloaded), or give the config a synth: section"
        )
    if missing:
        key = missing[0]
        raise UserError(f"config key '{key}' has no value; set it in {path} or pass {key}=...")
    try:
        config: CompareConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise UserError(explain_omegaconf_error(exc)) from None
    check_values(config, path)
    return config


def check_values(cfg: CompareConfig, path: str) -> None:
    """Ranges and choices the types do not say; each error names the key."""

    def fail(key: str, what: str) -> None:
        raise UserError(f"config key '{key}' {what} (in {path} or the overrides)")

    if cfg.raw is not None and cfg.synth is not None:
        fail("raw", "is set, but the config also has a synth: section; keep one of them")
    if not cfg.name or "/" in cfg.name:
        fail("name", f"must be a folder name, got {cfg.name!r}")
    if cfg.synth is not None:
        if cfg.synth.layout not in ("grid", "lrw"):
            fail("synth.layout", f"must be grid or lrw, got {cfg.synth.layout!r}")
        if cfg.synth.speakers < 1 or cfg.synth.clips < 1:
            fail("synth.speakers", "and synth.clips must be at least 1")
    if cfg.prepare.layout not in PREPARE_LAYOUTS:
        fail("prepare.layout", f"must be one of {', '.join(PREPARE_LAYOUTS)}")
    if cfg.prepare.landmarks not in LANDMARK_BACKENDS:
        fail("prepare.landmarks", f"must be one of {', '.join(LANDMARK_BACKENDS)}")
    if cfg.synth is not None and cfg.prepare.layout != cfg.synth.layout:
        fail("prepare.layout", f"must be the synth layout {cfg.synth.layout!r}")
    if not cfg.active_methods:
        fail("methods", "names no method; add a preset per method (see experiments/compare/)")
    for kind, presets in (("experts", cfg.experts), ("methods", cfg.active_methods)):
        for name, preset in presets.items():
            if not preset.configs:
                fail(f"{kind}.{name}.configs", "is empty; list the fit YAML files")
            if preset.max_steps is not None and preset.max_steps < 1:
                fail(f"{kind}.{name}.max_steps", "must be at least 1")
            bad = next((o for o in preset.overrides if "=" not in o), None)
            if bad is not None:
                fail(f"{kind}.{name}.overrides", f"holds {bad!r}, which is not key=value")
    for name, preset in cfg.active_methods.items():
        if preset.samples < 1:
            fail(f"methods.{name}.samples", "must be at least 1")
    unknown = [b for b in cfg.evaluate.baselines if b not in BASELINES]
    if unknown:
        fail("evaluate.baselines", f"holds {unknown[0]!r}; the reference rows are {BASELINES}")
    if cfg.evaluate.videos < 0:
        fail("evaluate.videos", "must be 0 or more")
    if cfg.parallel is not None and cfg.parallel < 1:
        fail("parallel", "must be at least 1")
    if cfg.seeds < 1:
        fail("seeds", f"must be at least 1, got {cfg.seeds}")
    expected = cfg.expected_data_identity
    if expected is not None and not re.fullmatch(r"[0-9a-f]{12,64}", expected):
        fail("expected_data_identity", f"must be 12 to 64 lowercase hex digits, got {expected!r}")


def check_raw(cfg: CompareConfig) -> None:
    """The raw corpus folder of a real-data config exists (checked before any work)."""
    if cfg.raw is not None and not Path(cfg.raw).is_dir():
        what = "is not a folder" if Path(cfg.raw).exists() else "does not exist"
        raise UserError(
            f"raw dataset folder {cfg.raw} {what}; pass raw= the folder of the downloaded "
            "corpus, laid out as `talking-faces prepare --help` describes"
        )


def to_plain(cfg: CompareConfig) -> dict[str, Any]:
    """The config as plain containers (without the ``quick:`` section, already merged)."""
    data = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    assert isinstance(data, dict)
    data.pop("quick", None)
    return cast("dict[str, Any]", data)


__all__ = [
    "DEFAULT_CONFIG",
    "CompareConfig",
    "EstimatesSection",
    "EvaluateSection",
    "ExpertPreset",
    "MethodPreset",
    "PrepareSection",
    "SynthSection",
    "check_raw",
    "load_compare_config",
    "to_plain",
]

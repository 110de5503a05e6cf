"""The sweep file: a W&B sweep config plus what each trial runs, and the trials it plans.

SWEEP.yaml -> **load_sweep** (W&B's own schema check, our settings) -> **plan_trials** (W&B's own
grid / random search engine, x seeds) -> trials -> executors
(:mod:`talking_faces.orchestration.sweep.runner`)

A sweep file is a W&B sweep config (``method``, ``metric: {name, goal}``, ``parameters`` with
``values`` / ``distribution`` / ``value``, optional ``name``, ``project``, ``entity``, ``run_cap``),
checked by the schema of W&B's ``sweeps`` package. That schema allows no extra top-level key, so
what each trial runs sits in one constant parameter, ``talking_faces``, whose ``value`` holds:

==================  =====================================================================
``configs``         the YAML files given to ``talking-faces fit`` (required)
``data``            the prepared dataset (required unless ``--data`` is given)
``protocol``        the evaluation protocol (default ``default``)
``seeds``           N (seeds 0..N-1) or a list of seeds; each configuration runs once per seed
``samples``         ``evaluate --samples`` (default 1)
``videos``          ``evaluate --videos``: sample videos per trial (default 1)
``eval_batch_size`` ``evaluate --batch-size`` (default 8)
``search_seed``     seed of the ``random`` method's draws (default 0)
``out``             the sweep folder (default ``runs/sweeps/<name>``; ``--out`` wins)
``submitit``        parameters of submitit's executor (``timeout_min``, ``slurm_partition``, ...)
``variants``        named sets of overrides: ``{PARAM: {NAME: {key: value, ...}}}`` (below)
==================  =====================================================================

A parameter named in ``variants`` is not a config key: each of its values names a set of fit
overrides, so rows of an ablation table (which switch several keys at once) are one swept
parameter, e.g. ``row: {values: [baseline, full]}`` with ``variants: {row: {baseline:
{model.mi_weight: 0}, full: {model.mi_weight: 1}}}``. Trials and leaderboard rows are named by
the value (``row=baseline``); the fit gets the overrides.

Every other parameter is a ``fit`` override: its name is the config key (``model.beta``, or
nested with W&B's ``parameters:`` dictionaries), its value the override's value; constant
parameters (``value:``) apply to every trial. The sweep sets ``seed``, ``out``, ``name``,
``ckpt_path`` and ``data.root`` itself, so those are refused as parameters.

``method: grid`` runs every combination of the ``values`` (W&B turns ``int_uniform`` and
``q_uniform`` into lists); ``method: random`` draws ``run_cap`` configurations (W&B's key for the
number of runs; required here, since a local random search has no other end), reproducibly from
``search_seed``; ``method: bayes`` chooses each trial from the finished ones on the W&B server and
runs only with ``--executor wandb``.

``run_cap`` is newer than the schema of ``sweeps`` 0.2.0 (the release that works with numpy 2),
so it is checked here and left out of that one schema check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import random
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from talking_faces.config.files import resolve_path
from talking_faces.config.schema import format_value
from talking_faces.errors import UserError
from talking_faces.utils.io import sha256_file, sha256_json

#: the constant parameter that holds what each trial runs
NAMESPACE = "talking_faces"
#: keys of the namespace and their defaults (``configs`` and ``data`` have none)
SETTINGS_DEFAULTS: dict[str, Any] = {
    "configs": None,
    "data": None,
    "protocol": "default",
    "seeds": 1,
    "samples": 1,
    "videos": 1,
    "eval_batch_size": 8,
    "search_seed": 0,
    "out": None,
    "submitit": {},
    "variants": {},
}
#: config keys the sweep sets for every trial (never a parameter or an extra override)
RESERVED_KEYS = ("seed", "out", "name", "ckpt_path", "data.root")
METHODS = ("grid", "random", "bayes")
_SLUG_MAX = 80


@dataclass(frozen=True)
class SweepSettings:
    """What each trial runs (the ``talking_faces`` constant parameter, resolved)."""

    configs: tuple[str, ...]
    data: str
    protocol: str = "default"
    seeds: tuple[int, ...] = (0,)
    samples: int = 1
    videos: int = 1
    eval_batch_size: int = 8
    search_seed: int = 0
    out: str | None = None
    submitit: dict[str, Any] = field(default_factory=dict)
    #: PARAM -> value -> overrides (see the module docstring)
    variants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class SweepSpec:
    """A loaded sweep file."""

    path: Path
    sha256: str
    name: str
    method: str
    metric: str | None
    goal: str
    run_cap: int | None
    #: the file as W&B reads it
    config: dict[str, Any]
    #: flat ``key -> W&B parameter spec`` of the fit overrides (nested dictionaries flattened)
    parameters: dict[str, dict[str, Any]]
    settings: SweepSettings

    @property
    def swept(self) -> list[str]:
        """Parameters that vary between configurations (not ``value:`` constants)."""
        return [k for k, p in self.parameters.items() if "value" not in p]


@dataclass(frozen=True)
class Trial:
    """One configuration with one seed: a ``fit`` then an ``evaluate``, in ``folder``."""

    name: str
    #: every override of the configuration (constants and swept), in the file's order
    overrides: dict[str, Any]
    #: the swept ones (what tells the configurations apart)
    swept: dict[str, Any]
    seed: int
    #: sha256 of the configuration without its seed (equal for every seed of it)
    config_id: str


# ------------------------------------------------------------------------------- loading
def _validator():
    """W&B's sweep-config checks (``sweeps.config``), imported quietly: the package declares a
    pydantic-1 option that pydantic 2 warns about on import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps.config import SweepConfig, schema_violations_from_proposed_config

    return SweepConfig, schema_violations_from_proposed_config


def wandb_violations(config: Mapping[str, Any]) -> list[str]:
    """What W&B's sweep-config schema (``sweeps`` package, offline) finds wrong in ``config``
    (``run_cap`` aside, see the module docstring); empty when it is a valid sweep config."""
    sweep_config, violations_of = _validator()
    checked = {k: v for k, v in config.items() if k != "run_cap"}
    try:
        found = list(violations_of(checked))
    except ValueError as exc:
        return [str(exc)]
    if not found:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sweep_config(checked)
        except Exception as exc:  # jsonschema.ValidationError, ValueError
            found = [str(exc).splitlines()[0]]
    return found


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    flat: dict[str, dict[str, Any]] = {}
    for key, spec in params.items():
        name = f"{prefix}{key}"
        if isinstance(spec, Mapping) and set(spec) == {"parameters"}:
            flat.update(_flatten(spec["parameters"], name + "."))
        else:
            flat[name] = dict(spec)
    return flat


def load_sweep(
    path: str | Path,
    data: str | None = None,
) -> SweepSpec:
    """Read and check a sweep file; ``data`` replaces the file's ``data``.

    Raises:
        UserError: a missing or unreadable file, a W&B schema violation, a missing or unknown
            ``talking_faces`` key, a reserved override, a missing config file.
    """
    path = resolve_path(path)
    config = _read_sweep_config(path)
    method = _method_of(path, config)
    params = dict(config.get("parameters") or {})
    if NAMESPACE not in params or set(params[NAMESPACE]) != {"value"}:
        raise UserError(
            f"sweep file {path} has no constant parameter {NAMESPACE!r} "
            f"(parameters: {{{NAMESPACE}: {{value: {{configs: [...], data: PREP}}}}}}) "
            "saying what each trial runs"
        )
    settings = _settings(path, params.pop(NAMESPACE)["value"], data)
    flat = _flatten(params)
    _check_reserved_parameters(path, flat)
    _check_variants(path, settings, flat)
    run_cap = _run_cap_of(path, config, method)
    metric = config.get("metric") or {}
    return SweepSpec(
        path=path,
        sha256=sha256_file(path),
        name=str(config.get("name") or path.stem),
        method=method,
        metric=metric.get("name"),
        goal=str(metric.get("goal", "minimize")),
        run_cap=run_cap,
        config=config,
        parameters=flat,
        settings=settings,
    )


def _read_sweep_config(path: Path) -> dict[str, Any]:
    """The sweep file's mapping, once it exists, is YAML and passes W&B's schema check."""
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist (e.g. experiments/sweeps/ldm_beta.yaml)")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise UserError(f"sweep file {path} is not valid YAML{line}") from None
    if not isinstance(config, dict):
        raise UserError(f"sweep file {path} must hold a mapping (a W&B sweep config)")
    violations = wandb_violations(config)
    if violations:
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise UserError(f"sweep file {path} is not a valid W&B sweep config: {violations[0]}{more}")
    return config


def _method_of(path: Path, config: Mapping[str, Any]) -> str:
    """The search method, one of :data:`METHODS`."""
    method = str(config["method"])
    if method not in METHODS:
        raise UserError(f"sweep file {path}: method {method!r} is not one of {', '.join(METHODS)}")
    return method


def _check_reserved_parameters(path: Path, flat: Mapping[str, Any]) -> None:
    """No parameter sets a key the sweep sets itself (:data:`RESERVED_KEYS`)."""
    for key in flat:
        if key in RESERVED_KEYS:
            raise UserError(
                f"sweep file {path}: parameter {key!r} is set by the sweep itself "
                f"({', '.join(RESERVED_KEYS)}); use {NAMESPACE}.seeds / {NAMESPACE}.data"
            )


def _check_variants(
    path: Path, settings: SweepSettings, flat: Mapping[str, dict[str, Any]]
) -> None:
    """Every ``variants`` entry names a parameter, covers each of its values, and sets no
    reserved key."""
    for name, named in settings.variants.items():
        spec_of = flat.get(name)
        if spec_of is None:
            raise UserError(
                f"sweep file {path}: {NAMESPACE}.variants.{name} names no parameter; add "
                f"parameters: {{{name}: {{values: [{', '.join(named)}]}}}}"
            )
        given = spec_of.get("values", [spec_of["value"]] if "value" in spec_of else [])
        missing = [str(v) for v in given if str(v) not in named]
        if missing:
            raise UserError(
                f"sweep file {path}: value {missing[0]!r} of parameter {name!r} has no entry in "
                f"{NAMESPACE}.variants.{name}"
            )
        for overrides in named.values():
            for key in overrides:
                if key in RESERVED_KEYS:
                    raise UserError(
                        f"sweep file {path}: {NAMESPACE}.variants.{name} sets {key!r}, which the "
                        "sweep sets itself"
                    )


def _run_cap_of(path: Path, config: Mapping[str, Any], method: str) -> int | None:
    """``run_cap``: a positive integer, required by ``method: random``."""
    run_cap = config.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or run_cap < 1):
        raise UserError(f"sweep file {path}: run_cap must be a positive integer, got {run_cap!r}")
    if method == "random" and run_cap is None:
        raise UserError(
            f"sweep file {path}: method random draws without end; set run_cap: N (W&B's key for "
            "the number of configurations to draw)"
        )
    return run_cap


def _settings(path: Path, value: Any, data: str | None) -> SweepSettings:
    if not isinstance(value, dict):
        raise UserError(f"sweep file {path}: {NAMESPACE}.value must be a mapping")
    unknown = sorted(set(value) - set(SETTINGS_DEFAULTS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(SETTINGS_DEFAULTS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"sweep file {path}: unknown key {NAMESPACE}.{unknown[0]}{hint}; known keys: "
            f"{', '.join(SETTINGS_DEFAULTS)}"
        )
    s = {**SETTINGS_DEFAULTS, **value}
    configs = s["configs"]
    if isinstance(configs, str):
        configs = [configs]
    if not configs or not all(isinstance(c, str) for c in configs):
        raise UserError(f"sweep file {path}: {NAMESPACE}.configs must list the fit YAML files")
    for c in configs:
        if not resolve_path(c).is_file():
            raise UserError(
                f"sweep file {path}: config file {c} does not exist (paths are relative to the "
                "folder the sweep runs from)"
            )
    data = data if data is not None else s["data"]
    if not data:
        raise UserError(f"sweep file {path}: set {NAMESPACE}.data (a prepared dataset) or --data")
    seeds = s["seeds"]
    if isinstance(seeds, bool) or not (
        (isinstance(seeds, int) and seeds >= 1)
        or (isinstance(seeds, list) and seeds and all(isinstance(x, int) for x in seeds))
    ):
        raise UserError(
            f"sweep file {path}: {NAMESPACE}.seeds must be a count (>= 1) or a list of integers"
        )
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    if len(set(seeds)) != len(seeds):
        raise UserError(f"sweep file {path}: {NAMESPACE}.seeds repeats a seed")
    for key in ("samples", "videos", "eval_batch_size", "search_seed"):
        low = 0 if key in ("videos", "search_seed") else 1
        if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < low:
            raise UserError(f"sweep file {path}: {NAMESPACE}.{key} must be an integer >= {low}")
    if not isinstance(s["submitit"], dict):
        raise UserError(f"sweep file {path}: {NAMESPACE}.submitit must be a mapping")
    variants = s["variants"]
    if not isinstance(variants, dict) or not all(
        isinstance(v, dict) and all(isinstance(o, dict) for o in v.values())
        for v in variants.values()
    ):
        raise UserError(
            f"sweep file {path}: {NAMESPACE}.variants must map a parameter to "
            "{value: {override: value}} mappings"
        )
    return SweepSettings(
        configs=tuple(configs),
        data=str(data),
        protocol=str(s["protocol"]),
        seeds=seeds,
        samples=s["samples"],
        videos=s["videos"],
        eval_batch_size=s["eval_batch_size"],
        search_seed=s["search_seed"],
        out=s["out"],
        submitit=dict(s["submitit"]),
        variants={str(k): {str(n): dict(o) for n, o in v.items()} for k, v in variants.items()},
    )


def check_extra_overrides(items: Sequence[str]) -> list[str]:
    """The command line's ``key=value`` overrides, checked for form and reserved keys."""
    out = []
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"override {item!r} is not key=value (e.g. trainer.max_steps=5)")
        if key.strip() in RESERVED_KEYS:
            raise UserError(
                f"override {item!r}: {key.strip()} is set by the sweep for every trial "
                f"({', '.join(RESERVED_KEYS)})"
            )
        out.append(item)
    return out


# ------------------------------------------------------------------------------- planning
@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """W&B's random search draws from ``random`` and ``numpy.random``: seed both, then restore."""
    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def plan_configurations(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every configuration (``key -> value`` of the fit overrides) the local executors run,
    from W&B's own search engine: the full grid, or ``run_cap`` seeded random draws.

    Raises:
        UserError: ``bayes`` (it needs the W&B server), a grid over a continuous distribution.
    """
    if spec.method == "bayes":
        raise UserError(
            f"sweep {spec.path}: method bayes picks each trial from the finished ones on the W&B "
            "server; run it with --executor wandb, or use method grid or random"
        )
    if not spec.parameters:
        return [{}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps import next_runs

    wb = {"method": spec.method, "parameters": spec.parameters}
    try:
        if spec.method == "grid":
            runs = next_runs(wb, [], n=_grid_size(spec) + 1)
        else:
            with _seeded(spec.settings.search_seed):
                runs = next_runs(wb, [], n=int(spec.run_cap or 1))
    except ValueError as exc:
        raise UserError(f"sweep {spec.path}: {str(exc).splitlines()[0]}") from None
    configs = []
    for run in runs:
        if run is None:
            break
        configs.append({k: _plain(run.config[k]["value"]) for k in spec.parameters})
    return configs


def _grid_size(spec: SweepSpec) -> int:
    """How many configurations W&B's grid search makes (it lists ``int_uniform`` and
    ``q_uniform`` as values)."""
    import numpy as np

    n = 1
    for p in spec.parameters.values():
        if "values" in p:
            n *= len(p["values"])
        elif p.get("distribution") == "q_uniform":
            n *= len(np.arange(p["min"], p["max"], p.get("q", 1.0)))
        elif "min" in p and "max" in p:  # int_uniform, W&B's default for integer bounds
            n *= int(p["max"]) - int(p["min"]) + 1
    return n


def _plain(value: Any) -> Any:
    """numpy scalars (from W&B's samplers) as Python numbers, so they print and hash alike."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def overrides_of(values: Mapping[str, Any]) -> list[str]:
    """``key=value`` overrides of a configuration."""
    return [f"{k}={format_value(v)}" for k, v in values.items()]


def config_id(values: Mapping[str, Any]) -> str:
    """sha256 of a configuration's overrides (its identity across seeds)."""
    return sha256_json({k: values[k] for k in sorted(values)})


def trial_name(swept: Mapping[str, Any], seed: int) -> str:
    """A readable folder name for a trial, fixed by its swept values and seed:
    ``model.beta-1e-06_seed0`` (a short hash is added when the values do not fit a name)."""
    raw = "_".join(f"{k}-{format_value(v)}" for k, v in swept.items()) or "base"
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", raw).strip("_.") or "base"
    if slug != raw or len(slug) > _SLUG_MAX:  # lossy or long: keep names apart with a hash
        slug = f"{slug[:_SLUG_MAX]}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"
    return f"{slug}_seed{seed}"


def make_trial(spec: SweepSpec, values: Mapping[str, Any], seed: int) -> Trial:
    """The trial of configuration ``values`` with ``seed``."""
    values = dict(values)
    swept = {k: values[k] for k in spec.swept if k in values}
    for name, named in spec.settings.variants.items():
        if name in values:  # a named set of overrides, in place of the parameter
            values.update(named[str(values.pop(name))])
    return Trial(
        name=trial_name(swept, seed),
        overrides=values,
        swept=swept,
        seed=int(seed),
        config_id=config_id(values),
    )


def plan_trials(spec: SweepSpec) -> list[Trial]:
    """Every trial: each configuration of :func:`plan_configurations` with each seed."""
    trials = [
        make_trial(spec, values, seed)
        for values in plan_configurations(spec)
        for seed in spec.settings.seeds
    ]
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(
            f"sweep {spec.path}: two trials would share the folder {dup} (a value repeated in "
            "the parameters?)"
        )
    return trials


def settings_record(spec: SweepSpec) -> dict[str, Any]:
    """The settings as a JSON-able dict (for the sweep's state and provenance)."""
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in dataclasses.asdict(spec.settings).items()
    }


def wandb_sweep_config(spec: SweepSpec, out: str, extra_overrides: Sequence[str]) -> dict[str, Any]:
    """The config registered with W&B: the file, plus ``seed`` as a swept parameter (one W&B
    run per trial) and ``command``, which makes each agent run ``talking-faces sweep ...
    --agent-trial`` with the run's parameters (W&B writes them to ``${args_json_file}``)."""
    config = json.loads(json.dumps(spec.config))  # a deep, plain copy
    config["parameters"]["seed"] = {"values": list(spec.settings.seeds)}
    config.setdefault("name", spec.name)
    config["command"] = [
        "${env}",
        "${interpreter}",
        "-m",
        "talking_faces",
        "sweep",
        str(spec.path),
        "--data",
        spec.settings.data,
        "--out",
        out,
        "--agent-trial",
        "${args_json_file}",
        *extra_overrides,
    ]
    return config


def trial_from_agent_args(spec: SweepSpec, args: Mapping[str, Any]) -> Trial:
    """The trial a W&B agent asks for: its parameters as W&B writes them to
    ``${args_json_file}`` (``{name: value}``, nested dictionaries for nested parameters).

    Raises:
        UserError: a parameter the sweep file does not have, or a missing seed.
    """
    args = dict(args)
    args.pop(NAMESPACE, None)
    if "seed" not in args:
        raise UserError("the W&B agent gave no seed: register the sweep with --executor wandb")
    seed = args.pop("seed")
    flat: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for k, v in node.items():
            name = f"{prefix}{k}"
            if isinstance(v, Mapping) and name not in spec.parameters:
                walk(v, name + ".")
            else:
                flat[name] = v

    walk(args, "")
    unknown = sorted(set(flat) - set(spec.parameters))
    missing = sorted(set(spec.parameters) - set(flat))
    if unknown or missing:
        raise UserError(
            f"the W&B agent's parameters do not match {spec.path} (unknown: "
            f"{', '.join(unknown) or 'none'}; missing: {', '.join(missing) or 'none'}); "
            "register the sweep again from this file"
        )
    values = {k: _plain(flat[k]) for k in spec.parameters}
    return make_trial(spec, values, int(seed))


__all__ = [
    "NAMESPACE",
    "RESERVED_KEYS",
    "SweepSettings",
    "SweepSpec",
    "Trial",
    "check_extra_overrides",
    "config_id",
    "format_value",
    "load_sweep",
    "make_trial",
    "overrides_of",
    "plan_configurations",
    "plan_trials",
    "settings_record",
    "trial_from_agent_args",
    "trial_name",
    "wandb_sweep_config",
    "wandb_violations",
]

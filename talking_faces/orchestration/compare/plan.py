"""The stages of a compare run: their commands, dependencies, outputs and input keys.

:class:`~talking_faces.orchestration.compare.config.CompareConfig` -> **build_plan** -> stages in
run order:

- ``synth`` (synthetic configs) -> ``prepare`` -> ``expert-<name>`` (both experts, in parallel)
- ``fit-<method>`` for every method in ``MODELS`` with a preset (in parallel), and with
  ``seeds: N`` (``--seeds N``) also ``fit-<method>-seed<s>`` for the seeds after the config's
- ``evaluate-<method>[-seed<s>]`` of each run (with its own seed) and ``evaluate-<reference>``
  (ground truth, static frame, shuffled audio; with the config's seed)
- ``leaderboard`` (Markdown, CSV, HTML) -> ``report`` (side-by-side videos, curves, README)

Every stage but the last two is one ``talking-faces`` command (a subprocess). A stage's **key**
is the sha256 of its command (with the report folder written as ``$OUT``, so a moved folder
keeps its keys), the content of the files it reads that the command only names (fit YAML files,
the protocol file), and the keys of the stages it depends on: change a step budget and that
method's fit, evaluation, the leaderboard and the report get new keys; nothing else does.

The report folder (``compare/<name>``)::

    README.md, leaderboard.md, leaderboard.csv, leaderboard.html, frames.png, videos/, curves/,
    commands.sh, timings.json, config.yaml, stages.jsonl, logs/<stage>.log, state/<stage>.json
    work/raw, work/prep (with experts/), work/runs/<run>, work/results/<row>.json
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talking_faces.config.files import named_file, resolve_path
from talking_faces.errors import UserError
from talking_faces.names import (
    CHECKPOINTS_DIR,
    LAST_CHECKPOINT,
    META_FILE,
    PAIRS_FILE,
    expert_file,
    last_checkpoint,
)
from talking_faces.orchestration.compare.config import CompareConfig, ExpertPreset, MethodPreset
from talking_faces.utils.io import sha256_file, sha256_json

#: changes when the report stage writes something else (a new key reruns it)
REPORT_FORMAT = "talking_faces.orchestration.compare.report/2"


@dataclass(frozen=True)
class Layout:
    """Where a compare run keeps everything, under its report folder ``root``."""

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def raw(self) -> Path:
        return self.work / "raw"

    @property
    def prep(self) -> Path:
        return self.work / "prep"

    @property
    def runs(self) -> Path:
        return self.work / "runs"

    @property
    def results(self) -> Path:
        return self.work / "results"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def curves(self) -> Path:
        return self.root / "curves"

    @property
    def leaderboard(self) -> dict[str, Path]:
        return {ext: self.root / f"leaderboard.{ext}" for ext in ("md", "csv", "html")}


@dataclass
class Stage:
    """One step of the plan. ``argv`` is a ``talking-faces`` command line (empty for the
    stages that run in the compare process: leaderboard, report)."""

    name: str
    kind: str
    argv: tuple[str, ...]
    deps: tuple[str, ...]
    #: what the command reads beyond its argv (file hashes, settings)
    values: dict[str, Any]
    #: seconds on 2 CPU cores (config estimates), for the time left
    estimate_s: float
    #: files or folders that exist once the stage finished
    outputs: tuple[Path, ...]
    #: removed before the stage runs afresh (its key changed); not when it resumes
    clean: tuple[Path, ...] = ()
    #: the run folder of a fit stage
    run_dir: Path | None = None
    #: method or reference name of fit / evaluate stages
    subject: str | None = None
    #: the training seed of a method's fit and evaluate stages
    seed: int | None = None
    #: the results JSON of an evaluate stage
    results: Path | None = None
    #: threads: "share" (the cores split between parallel stages) or "one" (the command runs
    #: worker processes itself)
    threads: str = "share"
    #: what the progress line says about the stage's size
    detail: str = ""
    key: str = ""

    @property
    def command(self) -> list[str]:
        return ["talking-faces", *self.argv]


@dataclass
class Plan:
    """Every stage in run order (dependencies first), and the methods the plan leaves out."""

    stages: list[Stage]
    layout: Layout
    methods: list[str]
    references: list[str]
    not_in_config: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


def _file_hashes(paths: Sequence[str]) -> dict[str, str]:
    """Each path as given -> the sha256 of the file it names (a packaged ``experiments/...``
    file when the working folder has none)."""
    return {p: sha256_file(resolve_path(p)) for p in paths}


def _protocol_file(protocol: str) -> str | None:
    """The protocol's YAML (a path, or a name under experiments/protocols/), when found."""
    path, _ = named_file("protocols", protocol)
    return str(path) if path.is_file() else None


def portable(argv: Sequence[str], root: Path) -> list[str]:
    """``argv`` with the report folder written as ``$OUT`` (keys survive a moved folder)."""
    prefix = str(root)
    return [a.replace(prefix, "$OUT") for a in argv]


def assign_keys(stages: list[Stage], root: Path) -> None:
    """Set every stage's key from its command, values and its dependencies' keys (in order)."""
    keys: dict[str, str] = {}
    for s in stages:
        s.key = sha256_json(
            {
                "stage": s.name,
                "argv": portable(s.argv, root),
                "values": s.values,
                "deps": {d: keys[d] for d in s.deps},
            }
        )
        keys[s.name] = s.key


def _fit_stage(
    name: str,
    run_name: str,
    section: str,
    subject: str,
    preset: ExpertPreset | MethodPreset,
    cfg: CompareConfig,
    layout: Layout,
    deps: tuple[str, ...],
    seed: int,
) -> tuple[Stage, Any]:
    """A ``fit`` stage with ``seed``, its run config validated as ``fit`` would (unknown keys,
    types)."""
    from talking_faces.training.runconfig import load_config

    configs = list(preset.configs)
    budget = [f"trainer.max_steps={preset.max_steps}"] if preset.max_steps is not None else []
    items = [
        f"data.root={layout.prep}",
        *preset.overrides,
        *budget,
        f"seed={seed}",
        f"out={layout.runs}",
        f"name={run_name}",
        "ckpt_path=last",
    ]
    missing = next((c for c in configs if not resolve_path(c).is_file()), None)
    if missing is not None:
        raise UserError(
            f"{section}.{subject}.configs names {missing}, which does not exist (a path "
            "relative to the folder compare runs in, or experiments/... for a packaged file)"
        )
    try:
        run_cfg = load_config(configs, items)
    except UserError as exc:
        raise UserError(f"{section}.{subject}: fit refuses its config: {exc}") from None
    steps = int(run_cfg.trainer.max_steps)
    if run_cfg.trainer.max_time is not None or steps <= 0:
        raise UserError(
            f"{section}.{subject}: compare budgets are training steps (the same on every "
            f"machine), but its config has trainer.max_time={run_cfg.trainer.max_time} and "
            f"trainer.max_steps={steps}; drop the max_time file or override, set max_steps"
        )
    run_dir = layout.runs / run_name
    stage = Stage(
        name=name,
        kind="fit" if section == "methods" else "expert",
        argv=("fit", *configs, *items),
        deps=deps,
        values={"configs": _file_hashes(configs)},
        estimate_s=cfg.estimates.startup + steps * preset.seconds_per_step,
        outputs=(run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT,),
        clean=(run_dir,),
        run_dir=run_dir,
        subject=subject,
        seed=seed,
        detail=f"{steps} steps" + (f", seed {seed}" if section == "methods" else ""),
    )
    return stage, run_cfg


def build_plan(cfg: CompareConfig, root: str | os.PathLike[str]) -> Plan:
    """The stages of ``cfg`` with their keys; every fit config is validated here (before any
    stage runs) the way ``fit`` validates it.

    Raises:
        UserError: a method preset for a name that is not in ``MODELS``, a preset whose YAML
            files select another ``model.name``, a fit config ``fit`` would refuse.
    """
    layout = Layout(Path(root))
    methods, not_in_config = _methods_of(cfg)
    stages = _data_stages(cfg, layout)
    experts, landmark_experts = _expert_stages(cfg, layout)
    stages += experts
    stages += _method_fit_stages(cfg, layout, methods, landmark_experts)
    expert_deps = ("prepare", *(s.name for s in experts))
    evaluations = _evaluate_stages(cfg, layout, methods, stages, expert_deps)
    stages += evaluations
    stages.append(_leaderboard_stage(cfg, layout, evaluations))
    fits = [s.name for s in stages if s.kind in ("fit", "expert")]
    stages.append(_report_stage(cfg, layout, fits))
    assign_keys(stages, layout.root)
    return Plan(
        stages=stages,
        layout=layout,
        methods=methods,
        references=list(cfg.evaluate.baselines),
        not_in_config=not_in_config,
    )


def _methods_of(cfg: CompareConfig) -> tuple[list[str], list[str]]:
    """The methods to run (in ``MODELS`` order) and those of ``MODELS`` the config leaves out.

    Raises:
        UserError: a preset names no method of ``MODELS``.
    """
    from talking_faces.models import MODELS, load_plugins

    load_plugins()
    unknown = [m for m in cfg.active_methods if m not in MODELS]
    if unknown:
        raise UserError(
            f"methods.{unknown[0]}: no method of that name in MODELS (known: "
            f"{', '.join(sorted(MODELS))}); fix the name or register the method "
            "(docs/adding-a-method.md)"
        )
    methods = [m for m in MODELS if m in cfg.active_methods]
    not_in_config = [m for m in MODELS if m not in cfg.active_methods]
    return methods, not_in_config


def _data_stages(cfg: CompareConfig, layout: Layout) -> list[Stage]:
    """``synth`` (a synthetic config) and ``prepare``."""
    if cfg.synth is not None:
        return [_synth_stage(cfg, layout), _prepare_stage(cfg, layout, str(layout.raw), ("synth",))]
    assert cfg.raw is not None
    return [_prepare_stage(cfg, layout, cfg.raw, ())]


def _synth_stage(cfg: CompareConfig, layout: Layout) -> Stage:
    """``talking-faces synth`` of the built-in corpus into ``work/raw``."""
    s = cfg.synth
    assert s is not None
    return Stage(
        name="synth",
        kind="synth",
        argv=(
            "synth",
            str(layout.raw),
            "--layout",
            s.layout,
            "--speakers",
            str(s.speakers),
            "--clips",
            str(s.clips),
            "--size",
            str(s.size),
            "--seed",
            str(cfg.seed),
            "--overwrite",  # a killed synth leaves a partial folder; synth is not resumable
        ),
        deps=(),
        values={},
        estimate_s=cfg.estimates.startup + cfg.estimates.synth,
        outputs=(layout.raw,),
        clean=(layout.raw,),
        threads="one",
        detail=f"{s.speakers} speakers x {s.clips} clips, {s.size} px",
    )


def _prepare_stage(cfg: CompareConfig, layout: Layout, raw: str, deps: tuple[str, ...]) -> Stage:
    """``talking-faces prepare`` of ``raw`` into ``work/prep``."""
    p = cfg.prepare
    prep_argv = ["prepare", raw, str(layout.prep), "--layout", p.layout, "--landmarks"]
    prep_argv += [p.landmarks, "--size", str(p.size), "--seed", str(cfg.seed)]
    for flag, value in (
        ("--split-protocol", p.split_protocol),
        ("--device", p.device),
        ("--workers", p.workers),
    ):
        if value is not None:
            prep_argv += [flag, str(value)]
    return Stage(
        name="prepare",
        kind="prepare",
        argv=tuple(prep_argv),
        deps=deps,
        # a raw corpus is named by its absolute path (hashing it whole would take longer
        # than preparing it)
        values={"raw": os.path.abspath(raw)} if cfg.raw is not None else {},
        estimate_s=cfg.estimates.startup + cfg.estimates.prepare,
        outputs=(layout.prep / META_FILE, layout.prep / PAIRS_FILE),
        clean=(layout.prep,),  # the experts are exported into it: they go too
        threads="one",
        detail=f"{p.size} px, {p.landmarks} landmarks",
    )


def _expert_stages(cfg: CompareConfig, layout: Layout) -> tuple[list[Stage], list[str]]:
    """An ``expert-<name>`` fit per expert preset (exporting into ``PREP/experts/``), and the
    names of those that train a landmark expert."""
    stages, landmark_experts = [], []
    for name, preset in cfg.experts.items():
        stage, run_cfg = _fit_stage(
            f"expert-{name}",
            f"expert-{name}",
            "experts",
            name,
            preset,
            cfg,
            layout,
            ("prepare",),
            cfg.seed,
        )
        model_name = str(run_cfg.model.name)
        exported = Path(expert_file(str(layout.prep), model_name))
        stage.outputs = (*stage.outputs, exported)
        stage.clean = (*stage.clean, exported, exported.with_name(exported.name + ".sha256"))
        stages.append(stage)
        if model_name == "landmarks":
            landmark_experts.append(stage.name)
    return stages, landmark_experts


def training_seeds(cfg: CompareConfig) -> list[int]:
    """The seeds each method is trained with: the config's ``seed`` and the ``seeds - 1`` after
    it."""
    return [cfg.seed + i for i in range(cfg.seeds)]


def run_name(method: str, seed: int, cfg: CompareConfig) -> str:
    """The run folder (and stage suffix) of ``method``'s run with ``seed``: the method's name
    for the config's seed (as before seeds existed, so those runs resume), else
    ``<method>-seed<seed>``."""
    return method if seed == cfg.seed else f"{method}-seed{seed}"


def _method_fit_stages(
    cfg: CompareConfig, layout: Layout, methods: Sequence[str], landmark_experts: Sequence[str]
) -> list[Stage]:
    """A ``fit-<run>`` per method and seed, after the landmark experts; the first seed of every
    method first, so a run cut short has one of each.

    Raises:
        UserError: a preset's YAML files select another ``model.name``.
    """
    stages = []
    for seed in training_seeds(cfg):
        for method in methods:
            preset = cfg.active_methods[method]
            # methods log val/lmd with the dataset's landmark expert; the SyncNet is evaluate's
            deps = ("prepare", *landmark_experts)
            run = run_name(method, seed, cfg)
            stage, run_cfg = _fit_stage(
                f"fit-{run}", run, "methods", method, preset, cfg, layout, deps, seed
            )
            if str(run_cfg.model.name) != method:
                raise UserError(
                    f"methods.{method}: its configs select model.name={run_cfg.model.name}; a "
                    f"preset trains the method it is named after"
                )
            stages.append(stage)
    return stages


def _evaluate_stages(
    cfg: CompareConfig,
    layout: Layout,
    methods: Sequence[str],
    stages: Sequence[Stage],
    expert_deps: tuple[str, ...],
) -> list[Stage]:
    """An ``evaluate-<run>`` of each method run's last checkpoint (with the run's seed), then an
    ``evaluate-<reference>`` per reference row, all under the config's protocol."""
    ev = cfg.evaluate
    protocol_file = _protocol_file(ev.protocol)
    ev_values = {"protocol": _file_hashes([protocol_file]) if protocol_file else ev.protocol}
    common = ["--data", str(layout.prep), "--protocol", ev.protocol, "--videos", str(ev.videos)]
    common += ["--batch-size", str(ev.batch_size)]
    rows: list[tuple[str, str, int, list[str], tuple[str, ...]]] = []
    for fit in (s for s in stages if s.kind == "fit"):
        assert fit.run_dir is not None and fit.subject is not None and fit.seed is not None
        samples = cfg.active_methods[fit.subject].samples
        ckpt = last_checkpoint(str(fit.run_dir))
        head = [ckpt, "--samples", str(samples)]
        deps = (*expert_deps, fit.name)
        rows.append((fit.run_dir.name, fit.subject, fit.seed, head, deps))
    rows += [(ref, ref, cfg.seed, ["--baseline", ref], expert_deps) for ref in ev.baselines]
    evaluations = []
    for row, subject, seed, head, deps in rows:
        out = layout.results / f"{row}.json"
        evaluations.append(
            Stage(
                name=f"evaluate-{row}",
                kind="evaluate",
                argv=(
                    "evaluate",
                    *head,
                    *common,
                    *("--seed", str(seed), "--device", ev.device, "--out", str(out)),
                ),
                deps=deps,
                values=ev_values,
                estimate_s=cfg.estimates.startup + cfg.estimates.evaluate,
                outputs=(out, out.with_name(f"{row}.clips.csv")),
                clean=(
                    out,
                    out.with_name(f"{row}.clips.csv"),
                    out.with_name(f"{row}.videos"),
                ),
                subject=subject,
                seed=seed if subject in methods else None,
                results=out,
            )
        )
    return evaluations


def _leaderboard_stage(cfg: CompareConfig, layout: Layout, evaluations: Sequence[Stage]) -> Stage:
    """``leaderboard`` (in the compare process): Markdown, CSV and HTML of every evaluation."""
    from talking_faces.reporting.leaderboard import default_reported

    reported = default_reported()
    board = layout.leaderboard
    return Stage(
        name="leaderboard",
        kind="leaderboard",
        argv=(),
        deps=tuple(s.name for s in evaluations),
        values={
            "smoke": cfg.smoke,
            "reported": _file_hashes([str(reported)]) if reported else None,
            "format": REPORT_FORMAT,
        },
        estimate_s=cfg.estimates.leaderboard,
        outputs=tuple(board.values()),
        clean=tuple(board.values()),
    )


def _report_stage(cfg: CompareConfig, layout: Layout, fits: Sequence[str]) -> Stage:
    """``report`` (in the compare process): side-by-side videos, curves, README."""
    return Stage(
        name="report",
        kind="report",
        argv=(),
        deps=("leaderboard", *fits),
        values={"format": REPORT_FORMAT, "smoke": cfg.smoke, "videos": cfg.evaluate.videos},
        estimate_s=cfg.estimates.report,
        outputs=(layout.root / "README.md", layout.curves),
        clean=(layout.videos, layout.curves, layout.root / "README.md", layout.root / "frames.png"),
    )


def leaderboard_command(plan: Plan) -> list[str]:
    """The ``talking-faces leaderboard`` command that writes the same tables as the compare's
    leaderboard stage (which calls the same functions in its own process)."""
    board = plan.layout.leaderboard
    results = [str(s.results) for s in plan.stages if s.results is not None]
    return [
        "talking-faces",
        "leaderboard",
        *results,
        "--out",
        str(board["md"]),
        "--csv",
        str(board["csv"]),
        "--html",
        str(board["html"]),
    ]


__all__ = [
    "REPORT_FORMAT",
    "Layout",
    "Plan",
    "Stage",
    "assign_keys",
    "build_plan",
    "leaderboard_command",
    "portable",
    "run_name",
    "training_seeds",
]

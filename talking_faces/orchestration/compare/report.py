"""The compare report: leaderboard files, side-by-side videos, training curves, README.

results JSONs (evaluate) + run folders (fit) -> **write_leaderboard** (the leaderboard's own
functions: Markdown, CSV, HTML; a smoke run says so in the title and notes) and
**write_report**: ``videos/<pair>.mp4`` (real | method | method ..., the pair's audio),
``frames.png`` (frames of the first video, one row per time), ``curves/<run>.png`` (every
logged loss and validation metric against the step) and ``curves/validation.png`` (the
validation metrics the methods share, one line per method), and
``README.md`` (what ran, whether the data matches the config's expected identity, the leaderboard,
which method beats the static frame on LMD and LSE-C, which differences between methods exceed
their spread over seeds, timings, how to rerun).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from talking_faces.errors import UserError
from talking_faces.names import (
    FPS,
    HIGHER_IS_BETTER,
    METRICS_CSV,
    RUN_CONFIG_FILE,
    SAMPLE_RATE,
    STATIC,
)
from talking_faces.orchestration.compare.config import CompareConfig
from talking_faces.orchestration.compare.plan import Plan
from talking_faces.utils.hardware import cpu_name, native_bf16_cpu
from talking_faces.utils.io import atomic_path, write_text_atomic

SMOKE_TITLE = "smoke run (compare --quick): not a comparison"
SMOKE_NOTE = (
    "These numbers come from `talking-faces compare --quick`: a tiny corpus and a few training "
    "steps, run to check that every stage works. They do not rank the methods; run "
    "`talking-faces compare` (or `make compare`) for the comparison."
)
#: the checks of the report's summary: (metric, lower is better)
BEAT_STATIC = tuple((m, not HIGHER_IS_BETTER[m]) for m in ("lmd", "lse_c"))
#: height of the name strip above each panel of the side-by-side videos
LABEL_HEIGHT = 12


# ------------------------------------------------------------------------------ leaderboard
def write_leaderboard(results: Sequence[Path], out: dict[str, Path], smoke: bool) -> Any:
    """Markdown, CSV and HTML of ``results`` (with the default paper-reported rows) at
    ``out["md"]``, ``out["csv"]``, ``out["html"]``; returns the Leaderboard."""
    from talking_faces.reporting.html import to_html
    from talking_faces.reporting.leaderboard import (
        build_leaderboard,
        default_reported,
        to_csv,
        to_markdown,
    )

    board = build_leaderboard([str(p) for p in results], default_reported())
    if smoke:
        board.title = f"Leaderboard: {SMOKE_TITLE}"
        board.note = SMOKE_NOTE.replace("`", "")
    md = to_markdown(board)
    page = to_html(board, out["html"])
    write_text_atomic(out["md"], md)
    write_text_atomic(out["csv"], to_csv(board))
    write_text_atomic(out["html"], page)
    return board


# ---------------------------------------------------------------------------------- videos
def _decode(path: Path) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Frames ``T,H,W,3`` uint8, mono float audio (None without), its sample rate."""
    import av

    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    audio, rate = None, 0
    with av.open(str(path)) as container:
        if container.streams.audio:
            rate = int(container.streams.audio[0].codec_context.sample_rate)
            chunks = [f.to_ndarray() for f in container.decode(audio=0)]
            if chunks:
                audio = np.concatenate(chunks, axis=1)[0].astype(np.float32)
    return frames, audio, rate


def _label_strip(names: Sequence[str], width: int) -> np.ndarray:
    """A white strip ``LABEL_HEIGHT,len(names)*width,3`` with each panel's name."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width * len(names), LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(img)
    for i, name in enumerate(names):
        draw.text((i * width + 2, 0), name[: max(1, width // 6)], fill="black")
    return np.asarray(img)


def _pair_videos(results: dict[str, Path]) -> dict[int, dict[str, Any]]:
    """Per pair index: its clip and each row's video file (from the results' ``videos``)."""
    pairs: dict[int, dict[str, Any]] = {}
    for name, path in results.items():
        data = json.loads(path.read_text())
        for v in data.get("videos") or []:
            entry = pairs.setdefault(int(v["pair"]), {"clip_id": v["clip_id"], "files": {}})
            entry["files"][name] = path.parent / v["path"]
    return pairs


def write_side_by_side(methods: dict[str, Path], out_dir: Path) -> list[Path]:
    """One mp4 per test pair that every method has a video of: the real clip, then each
    method's clip (``methods``: name -> results JSON, in column order), names above, the pair's
    audio muxed. Returns the files written."""
    from talking_faces.utils.mp4 import write_clip_mp4

    written = []
    for pair, entry in sorted(_pair_videos(methods).items()):
        files = entry["files"]
        if set(files) != set(methods):
            continue
        panels, audio, rate = [], None, 0
        for i, name in enumerate(methods):
            frames, sound, sr = _decode(files[name])
            half = frames.shape[2] // 2
            if i == 0:
                panels.append(frames[:, :, :half])  # real | generated: the real clip
                audio, rate = sound, sr
            panels.append(frames[:, :, half:])
        t = min(p.shape[0] for p in panels)
        sizes = {p.shape[1:3] for p in panels}
        if len(sizes) != 1:
            raise UserError(f"the sample videos of pair {pair} differ in size ({sorted(sizes)})")
        video = np.concatenate([p[:t] for p in panels], axis=2)
        width = panels[0].shape[2]
        strip = _label_strip(["real", *methods], width)
        video = np.concatenate([np.broadcast_to(strip, (t, *strip.shape)), video], axis=1)
        if audio is not None:
            n = t * rate // FPS
            audio = np.pad(audio[:n], (0, max(0, n - len(audio))))
        path = out_dir / f"{pair:04d}-{str(entry['clip_id']).replace('/', '_')}.mp4"
        write_clip_mp4(path, np.ascontiguousarray(video), audio, FPS, rate or SAMPLE_RATE)
        written.append(path)
    return written


#: the report's picture of frames from each method beside the real clip
FRAMES_PICTURE = "frames.png"
#: frames of the first side-by-side video in the report's ``frames.png`` (at 25 fps: 0.4 to 2 s)
PICTURE_FRAMES = (10, 20, 30, 40, 50)
#: ``frames.png`` is drawn this many times larger than the videos (nearest neighbour)
PICTURE_SCALE = 2


def write_frames_picture(video: Path, path: Path, frames: Sequence[int] = PICTURE_FRAMES) -> Path:
    """``path`` (PNG): the names strip of a side-by-side ``video`` (real | method | ...), then
    one row per frame index of ``frames`` (those the clip has), each row the real frame and every
    method's frame at that time, drawn :data:`PICTURE_SCALE` times larger."""
    from PIL import Image

    clip, _, _ = _decode(video)
    keep = [i for i in frames if i < len(clip)] or [0]
    strip = clip[0, :LABEL_HEIGHT]
    rows = [clip[i, LABEL_HEIGHT:] for i in keep]
    picture = np.concatenate([strip, *rows], axis=0)
    img = Image.fromarray(np.ascontiguousarray(picture))
    img = img.resize(
        (img.width * PICTURE_SCALE, img.height * PICTURE_SCALE), Image.Resampling.NEAREST
    )
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


# ---------------------------------------------------------------------------------- curves
def read_metrics_csv(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``metrics.csv`` of a run: per column, its (step, value) points (empty cells skipped)."""
    series: dict[str, list[tuple[int, float]]] = {}
    if not path.is_file():
        return series
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = int(float(row.get("step") or 0))
            except ValueError:
                continue
            for key, text in row.items():
                if key in ("step", "epoch") or not text:
                    continue
                try:
                    value = float(text)
                except ValueError:
                    continue
                if math.isfinite(value):
                    series.setdefault(key, []).append((step, value))
    return series


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")


def plot_run(title: str, series: dict[str, list[tuple[int, float]]], path: Path) -> None:
    """One small plot per logged column (training losses first, then validation metrics)."""
    from matplotlib.figure import Figure

    keys = sorted(series, key=lambda k: (not k.startswith("train"), k))
    cols = min(4, max(1, len(keys)))
    rows = max(1, math.ceil(len(keys) / cols))
    fig = Figure(figsize=(3.2 * cols, 2.3 * rows + 0.4), layout="constrained")
    fig.suptitle(title)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        steps, values = zip(*series[key], strict=True)
        ax.plot(steps, values, marker="." if len(steps) < 20 else None, linewidth=1)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("step", fontsize=7)
    _save(fig, path)


def plot_shared_validation(runs: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> bool:
    """Validation metrics logged by at least two methods, one line per method; False when
    there are none."""
    from matplotlib.figure import Figure

    shared = sorted(
        k
        for k in {k for s in runs.values() for k in s if k.startswith("val/")}
        if sum(k in s for s in runs.values()) >= 2
    )
    if not shared:
        return False
    cols = min(3, len(shared))
    rows = math.ceil(len(shared) / cols)
    fig = Figure(figsize=(3.6 * cols, 2.6 * rows + 0.4), layout="constrained")
    fig.suptitle("validation during training")
    for i, key in enumerate(shared):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name, series in runs.items():
            if key in series:
                steps, values = zip(*series[key], strict=True)
                ax.plot(steps, values, marker=".", linewidth=1, label=name)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("step", fontsize=7)
        ax.legend(fontsize=7)
    _save(fig, path)
    return True


def write_curves(run_dirs: dict[str, Path], methods: Sequence[str], out_dir: Path) -> list[Path]:
    """``<run>.png`` per run (methods and experts) and ``validation.png`` for the methods."""
    written = []
    all_series = {name: read_metrics_csv(d / METRICS_CSV) for name, d in run_dirs.items()}
    for name, series in all_series.items():
        if series:
            path = out_dir / f"{name}.png"
            plot_run(f"{name} ({run_dirs[name].name})", series, path)
            written.append(path)
    shared = {m: all_series[f"fit-{m}"] for m in methods if all_series.get(f"fit-{m}")}
    path = out_dir / "validation.png"
    if plot_shared_validation(shared, path):
        written.append(path)
    return written


# ---------------------------------------------------------------------------------- README
def beats_static(board: Any) -> list[dict[str, Any]]:
    """Per group and method row: its LMD and LSE-C against the static-frame reference row."""
    out = []
    for group in board.groups:
        static = next((r for r in group.references if r.method == STATIC), None)
        if static is None:
            continue
        for row in group.ranked:
            checks = {}
            for metric, lower in BEAT_STATIC:
                if metric in row.mean and metric in static.mean:
                    a, b = row.mean[metric], static.mean[metric]
                    checks[metric] = {"method": a, "static": b, "beats": a < b if lower else a > b}
            out.append({"method": row.label, "checks": checks})
    return out


#: the metrics the seed-spread section compares methods on (those a row has)
SEED_SPREAD_METRICS = ("lse_c", "lmd", "final_score")


def seed_spread(board: Any) -> list[dict[str, Any]]:
    """Per group, every pair of method rows (in rank order) on each of
    :data:`SEED_SPREAD_METRICS`: the difference of their means over seeds and whether it exceeds
    the seed spread, i.e. is larger than the sum of the two rows' standard deviations over seeds
    (their mean ± std ranges do not overlap); ``exceeds`` is None when a row has one seed."""
    out = []
    for group in board.groups:
        rows = [r for r in group.ranked if not r.is_reference]
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                for metric in SEED_SPREAD_METRICS:
                    if metric not in a.mean or metric not in b.mean:
                        continue
                    sa, sb = a.std.get(metric), b.std.get(metric)
                    diff = a.mean[metric] - b.mean[metric]
                    exceeds = None if sa is None or sb is None else abs(diff) > sa + sb
                    out.append(
                        {
                            "metric": metric,
                            "a": a.label,
                            "b": b.label,
                            "seeds": (len(a.seeds), len(b.seeds)),
                            "difference": diff,
                            "std": (sa, sb),
                            "exceeds": exceeds,
                        }
                    )
    return out


def _seed_section(board: Any, cfg: CompareConfig) -> list[str]:
    """Which differences between methods exceed their spread over seeds."""
    lines = ["", "## Differences between methods against the seed spread", ""]
    checks = seed_spread(board)
    if not checks:
        return [*lines, "Fewer than two methods were scored."]
    if all(c["exceeds"] is None for c in checks):
        return [
            *lines,
            f"Each method was trained with one seed ({cfg.seed}), so the spread over seeds is "
            "not measured and no difference between methods can be told from seed noise. "
            "`talking-faces compare --seeds 3` trains three and fills this section.",
        ]
    lines += [
        "A difference exceeds the seed spread when it is larger than the sum of the two rows' "
        "standard deviations over seeds (their mean ± std ranges do not overlap).",
        "",
        "| metric | methods | difference | std over seeds | exceeds the seed spread |",
        "|---|---|---:|---|---|",
    ]
    for c in checks:
        stds = ", ".join("–" if v is None else f"{v:.3g}" for v in c["std"])
        verdict = {True: "yes", False: "no", None: "– (one seed)"}[c["exceeds"]]
        lines.append(
            f"| {c['metric']} | {c['a']} − {c['b']} | {c['difference']:+.3g} | {stds} | {verdict} |"
        )
    return lines


def data_identity_line(plan: Plan, cfg: CompareConfig) -> str:
    """One line: this run's data identity (the prepared dataset's identity sha256) and whether
    it matches the config's ``expected_data_identity``."""
    from talking_faces.data.dataset import PreparedDataset

    try:
        identity = PreparedDataset.load(plan.layout.prep).identity_sha256()
    except UserError:
        return "data identity: unknown (the prepared dataset is not complete)"
    expected = cfg.expected_data_identity
    if expected is None:
        return f"data identity {identity[:12]} (the config names no expected_data_identity)"
    if identity.startswith(expected):
        return (
            f"data identity {identity[:12]} matches the config's expected_data_identity: the "
            "same prepared data as the run the config was measured on"
        )
    return (
        f"data identity {identity[:12]} differs from the config's expected_data_identity "
        f"{expected[:12]}: this run's data is not the data the config was measured on (other "
        "synth or prepare settings, or another library version; docs/datasets.md), so its "
        "numbers are not comparable with that run's digit for digit"
    )


def _run_arithmetic(run_dir: Path | None) -> str:
    """How a training run computed: its saved ``trainer.precision`` (``auto`` resolved) and
    memory format; empty for a stage that trains nothing or a run folder not written yet."""
    if run_dir is None:
        return ""
    try:
        trainer = OmegaConf.load(run_dir / RUN_CONFIG_FILE).trainer
    except (OSError, AttributeError, ValueError):
        return ""
    fmt = "channels-last" if trainer.get("channels_last", False) else "NCHW"
    return f"{trainer.get('precision', '32-true')}, {fmt}"


def _timings_table(plan: Plan) -> list[str]:
    lines = ["| stage | what | arithmetic | seconds |", "|---|---|---|---:|"]
    for s in plan.stages:
        try:
            rec = json.loads((plan.layout.state / f"{s.name}.json").read_text())
            seconds = f"{rec['seconds']:.0f}"
        except (OSError, json.JSONDecodeError, KeyError):
            seconds = "–"  # this stage (the report) is being written now
        lines.append(
            f"| {s.name} | {s.detail or s.kind} | {_run_arithmetic(s.run_dir)} | {seconds} |"
        )
    return lines


def write_readme(
    plan: Plan,
    cfg: CompareConfig,
    invoked: str,
    board: Any,
    videos: Sequence[Path],
    curves: Sequence[Path],
    picture: Path | None = None,
) -> None:
    """``README.md`` of the report folder."""
    root = plan.layout.root
    lines = [
        *_readme_intro(plan, cfg, invoked),
        *_static_section(board),
        *_seed_section(board, cfg),
        *_leaderboard_section(root),
        *_videos_section(plan, videos, picture),
        *_curves_section(root, curves),
        *_timings_section(plan),
        *_rerun_section(invoked),
    ]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    write_text_atomic(root / "README.md", text)


def _readme_intro(plan: Plan, cfg: CompareConfig, invoked: str) -> list[str]:
    """The title (and the smoke-run note), what ran, one row per method."""
    title = f"# Compare `{cfg.name}`" + (f": {SMOKE_TITLE}" if cfg.smoke else "")
    lines = [title, ""]
    if cfg.smoke:
        lines += [f"> **{SMOKE_NOTE}**", ""]
    data = (
        f"the synthetic corpus ({cfg.synth.speakers} speakers x {cfg.synth.clips} clips, "
        f"{cfg.synth.size} px)"
        if cfg.synth is not None
        else f"the raw corpus {cfg.raw}"
    )
    lines += [
        f"Made by `{invoked}`: {data}, prepared at {cfg.prepare.size} px "
        f"({cfg.prepare.landmarks} landmarks), both evaluation experts trained on it, then "
        f"every method ({', '.join(plan.methods)}) trained for its step budget and scored under "
        f"protocol `{cfg.evaluate.protocol}` on the dataset's fixed test pairs with the "
        f"reference rows ({', '.join(plan.references)}). {_seeds_text(cfg)} Budgets are "
        "steps, not minutes.",
        "",
        f"{_sentence(data_identity_line(plan, cfg))}. The synthetic corpus and its prepared "
        "identity are the same on every x86-64 CPU; training is not: PyTorch's CPU kernels are "
        "chosen by the instruction set (AVX2, AVX-512, AMX), so the experts and methods trained on "
        "another CPU differ in their last digits and can differ beyond them. Compare runs from "
        "different machines through their intervals and seed spreads.",
        "",
        "| method | steps | samples (evaluate) | configs |",
        "|---|---:|---:|---|",
    ]
    for m in plan.methods:
        p = cfg.active_methods[m]
        extra = f" + {' '.join(p.overrides)}" if p.overrides else ""
        lines.append(f"| {m} | {p.max_steps} | {p.samples} | {' '.join(p.configs)}{extra} |")
    if plan.not_in_config:
        lines += [
            "",
            f"Methods without a preset in this config (not run): {', '.join(plan.not_in_config)}.",
        ]
    return lines


def _sentence(line: str) -> str:
    """``line`` with a capital first letter."""
    return line[:1].upper() + line[1:]


def _seeds_text(cfg: CompareConfig) -> str:
    """Which seeds trained the methods."""
    from talking_faces.orchestration.compare.plan import training_seeds

    seeds = training_seeds(cfg)
    if len(seeds) == 1:
        return f"Seed {cfg.seed}."
    return (
        f"Seed {cfg.seed} for the data, the experts and the reference rows; every method trained "
        f"and evaluated with seeds {', '.join(map(str, seeds))} (rows: mean ± std over seeds)."
    )


def _static_section(board: Any) -> list[str]:
    """Each method against the static frame on LMD and LSE-C."""
    lines = ["", "## Against the static frame (LMD lower, LSE-C higher is better)", ""]
    verdicts = beats_static(board)
    if not verdicts:
        return [*lines, "No static reference row was scored."]
    lines += ["| method | LMD (static) | LSE-C (static) | beats static on both |"]
    lines += ["|---|---|---|---|"]
    for v in verdicts:
        c = v["checks"]
        cells = []
        for metric, _ in BEAT_STATIC:
            if metric in c:
                mark = "yes" if c[metric]["beats"] else "no"
                cells.append(f"{c[metric]['method']:.4g} ({c[metric]['static']:.4g}) {mark}")
            else:
                cells.append("–")
        both = all(x["beats"] for x in c.values()) and len(c) == len(BEAT_STATIC)
        lines.append(f"| {v['method']} | {' | '.join(cells)} | {'yes' if both else 'no'} |")
    return lines


def _leaderboard_section(root: Path) -> list[str]:
    """Links to the leaderboard files, then its tables (from ``leaderboard.md``)."""
    lines = [
        "",
        "## Leaderboard",
        "",
        "[leaderboard.md](leaderboard.md) (below), [leaderboard.html](leaderboard.html) "
        "(sortable tables, bar charts with intervals, videos), "
        "[leaderboard.csv](leaderboard.csv) (every metric).",
        "",
    ]
    md = (root / "leaderboard.md").read_text().split("\n")
    # the tables without their page title, one level down
    return lines + [
        "#" + ln if ln.startswith("## ") else ln
        for ln in md
        if not ln.startswith("# ") and SMOKE_NOTE not in ln  # the title and note are above
    ]


def _videos_section(plan: Plan, videos: Sequence[Path], picture: Path | None) -> list[str]:
    """The frames picture and links to the side-by-side videos."""
    lines = ["## Sample videos", ""]
    if not videos:
        return [*lines, "None (evaluate.videos is 0)."]
    if picture is not None:
        times = ", ".join(f"{i / FPS:.1f}" for i in PICTURE_FRAMES)
        lines += [
            f"Frames of the first video ({videos[0].name}) at {times} s, one row each: real | "
            f"{' | '.join(plan.methods)}:",
            "",
            f"![frames of every method beside the real clip]({picture.name})",
            "",
        ]
    lines.append(
        f"The first test pairs, one mp4 each: real | {' | '.join(plan.methods)}, with the "
        "pair's audio."
    )
    lines.append("")
    return lines + [f"- [{p.name}]({p.relative_to(plan.layout.root)})" for p in videos]


def _curves_section(root: Path, curves: Sequence[Path]) -> list[str]:
    """Links to the training curves."""
    lines = ["", "## Training curves", ""]
    return lines + ([f"- [{p.name}]({p.relative_to(root)})" for p in curves] or ["None."])


def _timings_section(plan: Plan) -> list[str]:
    """The seconds of every stage, and where the commands and timings are."""
    return [
        "",
        "## Timings (seconds, on the machine that ran each stage)",
        "",
        f"This report was written on this CPU: {cpu_name()} "
        f"({'with' if native_bf16_cpu() else 'without'} native bf16). `arithmetic` is what each "
        "training run's saved config says (`trainer.precision: auto` is saved resolved: "
        "bf16-mixed where the CPU has AVX512-BF16 or AMX, fp32 elsewhere); a run trained in bf16 "
        "differs from an fp32 one beyond the last digits.",
        "",
        *_timings_table(plan),
        "",
        "[timings.json](timings.json) has the same per stage and each compare invocation; the "
        "exact commands are in [commands.sh](commands.sh), their output in `logs/`.",
        "",
    ]


def _rerun_section(invoked: str) -> list[str]:
    """How to continue or rerun the comparison."""
    return [
        "## Rerun",
        "",
        f"`{invoked}` again skips every finished stage; a changed budget or config reruns what "
        "depends on it. Run folders, results and the prepared data are under `work/`.",
        "",
    ]


def write_report(plan: Plan, cfg: CompareConfig, invoked: str) -> None:
    """The report stage: videos, curves and README (the leaderboard files exist by now)."""
    from talking_faces.reporting.leaderboard import build_leaderboard, default_reported

    layout = plan.layout
    results = [s.results for s in plan.stages if s.results is not None]
    board = build_leaderboard([str(p) for p in results], default_reported())
    methods = {m: plan[f"evaluate-{m}"].results for m in plan.methods}
    videos = write_side_by_side(methods, layout.videos) if cfg.evaluate.videos else []  # type: ignore[arg-type]
    picture = write_frames_picture(videos[0], layout.root / FRAMES_PICTURE) if videos else None
    runs = {s.name: s.run_dir for s in plan.stages if s.run_dir is not None}
    curves = write_curves(runs, plan.methods, layout.curves)
    layout.curves.mkdir(parents=True, exist_ok=True)
    write_readme(plan, cfg, invoked, board, videos, curves, picture)


__all__ = [
    "SMOKE_NOTE",
    "SMOKE_TITLE",
    "beats_static",
    "data_identity_line",
    "seed_spread",
    "plot_run",
    "plot_shared_validation",
    "read_metrics_csv",
    "write_curves",
    "write_frames_picture",
    "write_leaderboard",
    "write_readme",
    "write_report",
    "write_side_by_side",
]

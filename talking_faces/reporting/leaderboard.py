"""The leaderboard: results JSONs (and paper-reported numbers) to tables a reader can trust.

results JSON + per-clip CSV (``talking-faces evaluate``, sweeps) -> **build_leaderboard** ->
one group per (dataset, split, protocol, pair list) -> Markdown / CSV / self-contained HTML

Rules:

- **Groups never mix.** Results are grouped by
:func:`talking_faces.evaluation.results.comparison_key`
  (dataset ``meta.json`` sha256, split, protocol sha256, pair-list sha256); each group is its
  own table, ranked on its protocol's ``primary_metric``.
- **Seeds merge into one row.** Results of the same row key (:func:`row_key`: method, kind,
  baseline and audio shift, the checkpoint's run config without what does not change the
  recipe — ``seed``, ``out``, ``name``, ``ckpt_path``, ``data.root``, ``data.num_workers``,
  ``logger``, ``checkpoint`` — and the evaluation settings: samples, drive, generation options)
  are one row: mean ± sample std over seeds (ddof 1) with the seed count. Two results of one row
  with the same seed are refused (one of them is a copy). Results without a run config (older
  files) are one row per checkpoint.
- **Uncertainty over test pairs.** Every metric with a per-clip column gets a 95% percentile
  bootstrap interval of the mean over pairs (:func:`bootstrap_ci`, scipy.stats.bootstrap, 2000
  resamples, seeded); for a row of several seeds the per-pair values are first averaged over
  seeds, then resampled over pairs.
- **Which differences are real.** Each row is compared with the best method row on the primary
  metric by a two-sided Wilcoxon signed-rank test over the paired per-pair values
  (:func:`paired_test`); a method row with p >= 0.05 is marked a tie with the best.
- **Reference rows** (ground truth, static frame, shuffled audio) are always shown, below the
  ranked methods, never ranked.
- **Paper-reported rows** (``experiments/leaderboard/reported.yaml``) are shown apart, marked
  reported, and never ranked against measured rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talking_faces import names
from talking_faces.config.files import named_file
from talking_faces.errors import UserError
from talking_faces.evaluation.results import (
    RESULTS_FORMAT,
    comparison_key,
    group_results,
    load_results,
    per_clip_path,
)
from talking_faces.utils.io import sha256_json

#: metrics shown in the Markdown and HTML tables (when a group has them), in this order; the
#: CSV has every metric with a direction
HEADLINE = names.HEADLINE_METRICS
#: run-config keys that do not change what a checkpoint learned (dropped from the row key)
RUN_CONFIG_IGNORED = ("seed", "out", "name", "ckpt_path", "logger", "checkpoint")
DATA_IGNORED = ("root", "num_workers")
REFERENCE_ORDER = names.BASELINES
CONFIDENCE = 0.95
N_RESAMPLES = 2000
ALPHA = 0.05
REPORTED_FIELDS = ("method", "dataset", "protocol", "metrics", "citation", "table")


# --------------------------------------------------------------------------------- statistics
def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (NaN dropped); None with fewer
    than two values. Same ``seed``, same interval.

    >>> bootstrap_ci([2.0, 2.0, 2.0])
    (2.0, 2.0)
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return None
    if np.all(x == x[0]):  # every resample has the same mean
        return float(x[0]), float(x[0])
    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences ``a - b`` (pairs where
    either is NaN dropped); 1.0 when every difference is zero, None with no pair."""
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    if d.size == 0:
        return None
    if np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


# --------------------------------------------------------------------------------- rows
def row_key(results: dict[str, Any]) -> str:
    """What makes two results the same row (so their seeds merge); see the module docstring."""
    run = results.get("run_config")
    ident: dict[str, Any] = {
        "method": results["method"],
        "kind": results["kind"],
        "baseline": results.get("baseline"),
        "num_samples": results.get("num_samples"),
        "drive": results.get("drive", "audio"),
        "generation_options": results.get("generation_options") or {},
    }
    if isinstance(run, dict):
        recipe = {k: v for k, v in run.items() if k not in RUN_CONFIG_IGNORED}
        if isinstance(recipe.get("data"), dict):
            recipe["data"] = {k: v for k, v in recipe["data"].items() if k not in DATA_IGNORED}
        ident["run_config"] = recipe
    elif results["kind"] != "baseline":
        ident["checkpoint"] = (results.get("checkpoint") or {}).get("sha256")
    return sha256_json(ident)


def row_label(results: dict[str, Any]) -> str:
    """A sweep trial: the method and its swept values; else the results' label."""
    sweep = (results.get("provenance") or {}).get("sweep")
    if sweep:
        from talking_faces.config.schema import format_value

        swept = sweep.get("swept") or {}
        parts = [f"{k}={format_value(v)}" for k, v in swept.items()]
        return " ".join([results["method"], *parts])
    return str(results.get("label") or results["method"])


def row_seed(results: dict[str, Any]) -> int:
    sweep = (results.get("provenance") or {}).get("sweep")
    return int(sweep["seed"]) if sweep else int(results.get("seed", 0))


def read_per_clip(results: dict[str, Any]) -> dict[str, dict[int, float]]:
    """Per-clip values of every numeric column, keyed by metric then pair index; empty when the
    CSV is missing (the row then has no intervals)."""
    path = per_clip_path(results)
    if not path.is_file():
        return {}
    out: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                pair = int(row["pair"])
            except (KeyError, ValueError):
                continue
            for key, text in row.items():
                if key == "pair" or text in (None, ""):
                    continue
                try:
                    out.setdefault(key, {})[pair] = float(text)
                except ValueError:
                    continue
    return out


@dataclass
class Row:
    """One leaderboard row: a method (or reference) configuration over its seeds."""

    key: str
    label: str
    method: str
    kind: str
    results: list[dict[str, Any]]
    seeds: list[int]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float | None] = field(default_factory=dict)
    ci: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    #: per-pair values (seed means), aligned to the group's pair indices
    per_pair: dict[str, np.ndarray] = field(default_factory=dict)
    rank: int | None = None
    p_value: float | None = None
    tie: bool | None = None
    best: bool = False
    video: dict[str, Any] | None = None

    @property
    def is_reference(self) -> bool:
        return self.kind == "baseline"


@dataclass
class Group:
    """The rows measured on one dataset split and pair list under one protocol."""

    key: tuple[str, str, str, str]
    dataset: dict[str, Any]
    split: str
    pairs: dict[str, Any]
    protocol: dict[str, Any]
    primary: str
    directions: dict[str, bool]
    metrics: list[str]
    rows: list[Row]

    @property
    def ranked(self) -> list[Row]:
        return [r for r in self.rows if not r.is_reference]

    @property
    def references(self) -> list[Row]:
        return [r for r in self.rows if r.is_reference]

    @property
    def title(self) -> str:
        d = self.dataset
        return (
            f"{d.get('layout') or 'dataset'} {d.get('size') or '?'} px, {d.get('num_clips')} "
            f"clips ({self.key[0][:8]}) · split {self.split} · {self.pairs.get('evaluated')} "
            f"pairs ({self.key[3][:8]}) · protocol {self.protocol.get('name')} ({self.key[2][:8]})"
        )


def _make_row(key: str, members: list[dict[str, Any]], n_pairs: int, metrics: list[str]) -> Row:
    seeds = [row_seed(r) for r in members]
    if len(set(seeds)) != len(seeds):
        dup = next(s for s in seeds if seeds.count(s) > 1)
        paths = [r.get("_path", r["method"]) for r in members if row_seed(r) == dup]
        raise UserError(
            f"results {paths[0]} and {paths[1]} are the same method, config and seed {dup}; "
            "pass only one of them"
        )
    order = sorted(range(len(members)), key=lambda i: seeds[i])
    members = [members[i] for i in order]
    row = Row(
        key=key,
        label=row_label(members[0]),
        method=members[0]["method"],
        kind=members[0]["kind"],
        results=members,
        seeds=sorted(seeds),
    )
    clips = [read_per_clip(r) for r in members]
    for m in metrics:
        vals = [float(r["metrics"][m]) for r in members if _is_number(r["metrics"].get(m))]
        if not vals:
            continue
        row.mean[m] = float(np.mean(vals))
        row.std[m] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        stacked = np.full((len(members), n_pairs), np.nan)
        for i, c in enumerate(clips):
            for pair, v in c.get(m, {}).items():
                if 0 <= pair < n_pairs:
                    stacked[i, pair] = v
        if np.isfinite(stacked).any():
            with np.errstate(all="ignore"):
                per_pair = np.nanmean(stacked, axis=0)
            row.per_pair[m] = per_pair
            row.ci[m] = bootstrap_ci(per_pair)
        else:
            row.ci[m] = None
    for r in members:
        for v in r.get("videos") or []:
            path = Path(r.get("_path", ".")).parent / v["path"]
            if path.is_file():
                row.video = {**v, "file": str(path)}
                break
        if row.video:
            break
    return row


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _reference_order(row: Row) -> tuple[int, str]:
    name = row.method
    return (REFERENCE_ORDER.index(name) if name in REFERENCE_ORDER else len(REFERENCE_ORDER), name)


def build_group(members: list[dict[str, Any]]) -> Group:
    """Rows of one comparison group, ranked (see the module docstring)."""
    first = members[0]
    protocol = first["protocol"]
    directions: dict[str, bool] = {}
    for r in members:
        for k, v in (r.get("higher_is_better") or {}).items():
            if v is not None:
                directions.setdefault(k, bool(v))
    present = {k for r in members for k, v in r["metrics"].items() if _is_number(v)}
    metrics = sorted(k for k in directions if k in present)
    metrics = [m for m in HEADLINE if m in metrics] + [m for m in metrics if m not in HEADLINE]
    primary = protocol.get("primary_metric") or next(
        (m for m in names.RANKING_FALLBACK if m in metrics), metrics[0] if metrics else ""
    )
    if primary in metrics:
        metrics.remove(primary)
        metrics.insert(0, primary)
    n_pairs = int(first["pairs"].get("evaluated") or first["pairs"].get("count") or 0)
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in members:
        by_key.setdefault(row_key(r), []).append(r)
    rows = [_make_row(k, v, n_pairs, metrics) for k, v in by_key.items()]

    higher = directions.get(primary, True)
    methods = [r for r in rows if not r.is_reference]
    scored = [r for r in methods if primary in r.mean]
    scored.sort(key=lambda r: -r.mean[primary] if higher else r.mean[primary])
    unscored = [r for r in methods if primary not in r.mean]
    refs = sorted((r for r in rows if r.is_reference), key=_reference_order)
    for i, row in enumerate(scored, 1):
        row.rank = i
    if scored:
        best = scored[0]
        best.best = True
        for row in [*scored[1:], *refs]:
            if primary in row.per_pair and primary in best.per_pair:
                row.p_value = paired_test(row.per_pair[primary], best.per_pair[primary])
            if not row.is_reference and row.p_value is not None:
                row.tie = row.p_value >= ALPHA
    return Group(
        key=comparison_key(first),
        dataset=first["dataset"],
        split=str(first["split"]),
        pairs=first["pairs"],
        protocol=protocol,
        primary=primary,
        directions=directions,
        metrics=metrics,
        rows=[*scored, *unscored, *refs],
    )


# --------------------------------------------------------------------------------- inputs
def find_results(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Results files among ``paths``: files as given, folders searched recursively for JSON
    files whose ``format`` is a results format (sweep states and other JSON are skipped)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*.json")):
                if f.name.startswith(".tmp-"):
                    continue
                try:
                    data = json.loads(f.read_text())
                except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(data, dict) and data.get("format") == RESULTS_FORMAT:
                    found.append(f)
        elif p.is_file():
            found.append(p)
        else:
            raise UserError(f"{p} does not exist; pass results JSON files or folders of them")
    if not found:
        raise UserError(
            f"no results files in {', '.join(map(str, paths))}; write them with "
            "`talking-faces evaluate` or `talking-faces sweep`"
        )
    return found


def load_reported(path: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """Paper-reported rows (``reported:`` list of the YAML file), checked against the schema in
    ``experiments/leaderboard/reported.yaml``; none when ``path`` is None."""
    import yaml

    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise UserError(f"reported-numbers file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise UserError(f"reported-numbers file {path} is not valid YAML") from None
    rows = data.get("reported") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise UserError(f"{path} must hold `reported:` with a list (empty is fine)")
    for i, row in enumerate(rows):
        where = f"{path}, reported[{i}]"
        if not isinstance(row, dict):
            raise UserError(f"{where}: each entry is a mapping")
        missing = [k for k in REPORTED_FIELDS if k not in row]
        if missing:
            raise UserError(f"{where}: missing {', '.join(missing)} (see the file's comments)")
        metrics = row["metrics"]
        if not isinstance(metrics, dict) or not metrics:
            raise UserError(f"{where}: metrics must map metric names to numbers")
        bad = [k for k, v in metrics.items() if not _is_number(v)]
        if bad:
            raise UserError(f"{where}: metric {bad[0]} is not a number")
    return rows


def default_reported() -> Path | None:
    """``experiments/leaderboard/reported.yaml`` here, else the packaged one."""
    path, _ = named_file("leaderboard", "reported")
    return path if path.is_file() else None


@dataclass
class Leaderboard:
    """Every group, the paper-reported rows, and how many results went in."""

    groups: list[Group]
    reported: list[dict[str, Any]]
    num_results: int
    #: heading of the Markdown and HTML outputs
    title: str = "Leaderboard"
    #: a line shown first, in bold, when set (e.g. compare --quick: "a smoke run, not a
    #: comparison")
    note: str | None = None


def build_leaderboard(
    paths: Iterable[str | os.PathLike[str]], reported: str | os.PathLike[str] | None = None
) -> Leaderboard:
    """Read results (files or folders) and the reported rows; group, merge seeds, rank."""
    files = find_results(paths)
    results = load_results(files)
    groups = [build_group(members) for members in group_results(results).values()]
    groups.sort(key=lambda g: (g.dataset.get("path", ""), g.split, g.protocol.get("name", "")))
    return Leaderboard(groups, load_reported(reported), len(results))


# --------------------------------------------------------------------------------- Markdown
def fmt(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.{digits}g}"


def cell(row: Row, metric: str) -> str:
    """``mean [lo, hi]`` (one seed) or ``mean ± std [lo, hi]`` (several); – when absent."""
    if metric not in row.mean:
        return "–"
    text = fmt(row.mean[metric])
    if row.std.get(metric) is not None:
        text += f" ± {fmt(row.std[metric], 2)}"
    ci = row.ci.get(metric)
    if ci is not None:
        text += f" [{fmt(ci[0], 3)}, {fmt(ci[1], 3)}]"
    return text


def arrow(group: Group, metric: str) -> str:
    d = group.directions.get(metric)
    return "↑" if d else "↓" if d is not None else ""


def status_text(row: Row) -> str:
    if row.best:
        return "best"
    if row.tie:
        return "≈ best"
    if row.is_reference:
        return "reference"
    return ""


def protocol_card(group: Group) -> list[tuple[str, str]]:
    """The group's protocol and data as (label, text) lines."""
    p, d = group.protocol, group.dataset
    sync = p.get("syncnet") or {}
    lmk = p.get("landmarks") or {}
    sync_text = sync.get("kind", "none")
    if sync.get("sha256"):
        sync_text += f" (sha256 {sync['sha256'][:12]}, {sync.get('input_size')} px)"
    lmk_text = lmk.get("kind", "none")
    if lmk.get("sha256"):
        lmk_text += f" (sha256 {lmk['sha256'][:12]})"
    better = "higher" if group.directions.get(group.primary, True) else "lower"
    lse = ", ".join(
        f"{k.removeprefix('lse_')} {p[k]}"
        for k in ("lse_mode", "lse_channel_order", "lse_crop_box")
        if p.get(k) is not None
    )
    return [
        (
            "dataset",
            f"{d.get('path')} ({d.get('layout')}, {d.get('size')} px, "
            f"{d.get('num_clips')} clips; data sha256 {group.key[0][:12]})",
        ),
        (
            "pairs",
            f"split {group.split}, {group.pairs.get('evaluated')} pairs "
            f"(sha256 {group.key[3][:12]})",
        ),
        ("protocol", f"{p.get('name')} (sha256 {group.key[2][:12]})"),
        (
            "images",
            f"{p.get('resolution')} px, colour {p.get('colour_space')}, SSIM window "
            f"{p.get('ssim_window')}, LPIPS {'yes' if p.get('lpips') else 'no'}, CPBD "
            f"{'yes' if p.get('cpbd') else 'no'}",
        ),
        (
            "LMD",
            f"variant {p.get('lmd_variant')}, reference {p.get('lmd_reference')}, landmark "
            f"model {lmk_text}",
        ),
        ("LSE", f"SyncNet {sync_text}; vshift {p.get('vshift')}" + (f"; {lse}" if lse else "")),
        ("ranked by", f"{group.primary} ({better} is better)"),
    ]


def to_markdown(board: Leaderboard) -> str:
    """The leaderboard as Markdown: one table per group, then the reported rows."""
    lines = [f"# {board.title}", ""]
    if board.note:
        lines += [f"> **{board.note}**", ""]
    lines += [
        f"{board.num_results} results in {len(board.groups)} group(s); a group is one dataset, "
        "split, pair list and protocol, and rows of different groups are never compared.",
        "Cells: mean over test pairs [95% bootstrap interval over pairs]; rows of several seeds: "
        "mean ± std over seeds [interval over pairs of the per-pair seed means]. p: two-sided "
        "Wilcoxon signed-rank test over pairs against the best method on the group's primary "
        "metric; ≈ best: not different at 0.05.",
        "",
    ]
    for n, g in enumerate(board.groups, 1):
        lines += [f"## {n}. {g.title}", ""]
        lines += [f"- {k}: {v}" for k, v in protocol_card(g)]
        lines.append("")
        shown = [m for m in g.metrics if m in HEADLINE or m == g.primary]
        head = ["rank", "method", "seeds", *[f"{m} {arrow(g, m)}" for m in shown]]
        head += [f"p ({g.primary})", ""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---:", "---", "---:"] + ["---"] * (len(head) - 3)) + "|")
        for r in g.rows:
            rank = str(r.rank) if r.rank is not None else ("ref" if r.is_reference else "–")
            cells = [rank, r.label, str(len(r.seeds))]
            cells += [cell(r, m) for m in shown]
            cells += [fmt(r.p_value, 3) if r.p_value is not None else "–", status_text(r)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Reported in papers (not measured here; never ranked)", ""]
    if not board.reported:
        lines.append(
            "None: `experiments/leaderboard/reported.yaml` lists only numbers that can be cited "
            "with their table, and none could be read from the papers yet."
        )
    else:
        names = sorted({k for r in board.reported for k in r["metrics"]})
        lines.append("| method | dataset | protocol | " + " | ".join(names) + " | source |")
        lines.append("|" + "---|" * (len(names) + 4))
        for rep in board.reported:
            vals = [fmt(rep["metrics"].get(k)) if k in rep["metrics"] else "–" for k in names]
            src = f"{rep['citation']}, {rep['table']} (reported)"
            lines.append(
                f"| {rep['method']} | {rep['dataset']} | {rep['protocol']} | "
                + " | ".join(vals)
                + f" | {src} |"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- CSV
def to_csv(board: Leaderboard) -> str:
    """One line per row of every group (every metric with a direction: mean, std over seeds,
    interval bounds) and one per reported row (``source`` reported)."""
    metrics = sorted({m for g in board.groups for m in g.metrics})
    reported_metrics = sorted({k for r in board.reported for k in r["metrics"]})
    for m in reported_metrics:
        if m not in metrics:
            metrics.append(m)
    buf = io.StringIO()
    w = csv.writer(buf)
    header = [
        "group",
        "source",
        "kind",
        "rank",
        "method",
        "label",
        "seeds",
        "seed_list",
        "primary_metric",
        "p_value",
        "tie_with_best",
        "dataset_sha256",
        "split",
        "pairs_sha256",
        "protocol",
        "protocol_sha256",
        "citation",
    ]
    for m in metrics:
        header += [f"{m}_mean", f"{m}_std", f"{m}_ci_low", f"{m}_ci_high"]
    w.writerow(header)
    for n, g in enumerate(board.groups, 1):
        for r in g.rows:
            line = [
                n,
                "measured",
                "reference" if r.is_reference else "method",
                r.rank if r.rank is not None else "",
                r.method,
                r.label,
                len(r.seeds),
                " ".join(map(str, r.seeds)),
                g.primary,
                "" if r.p_value is None else f"{r.p_value:.6g}",
                "" if r.tie is None else str(r.tie).lower(),
                g.key[0],
                g.split,
                g.key[3],
                g.protocol.get("name"),
                g.key[2],
                "",
            ]
            for m in metrics:
                ci = r.ci.get(m)
                line += [
                    _num(r.mean.get(m)),
                    _num(r.std.get(m)),
                    _num(ci[0] if ci else None),
                    _num(ci[1] if ci else None),
                ]
            w.writerow(line)
    for rep in board.reported:
        line = ["", "reported", "reported", "", rep["method"], rep["method"], "", "", "", "", ""]
        line += ["", rep["dataset"], "", rep["protocol"], "", f"{rep['citation']}, {rep['table']}"]
        for m in metrics:
            line += [_num(rep["metrics"].get(m)), "", "", ""]
        w.writerow(line)
    return buf.getvalue()


def _num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6g}"


__all__ = [
    "Group",
    "Leaderboard",
    "Row",
    "bootstrap_ci",
    "build_group",
    "build_leaderboard",
    "default_reported",
    "find_results",
    "load_reported",
    "paired_test",
    "read_per_clip",
    "row_key",
    "to_csv",
    "to_markdown",
]

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
- **Ground-truth normalisation** (THEval). Each metric of
  :data:`talking_faces.utils.normalise.GT_NORMALISED_METRICS` a group has is shown raw and as
  ``<key>_norm`` = ``1 - |m - m_GT| / |m_GT|`` against the group's ground-truth row (same
  protocol and pairs by construction); ``final_score`` is the unweighted mean of the normalised
  metrics the protocol scores, their list written beside the table. A group without a
  ground-truth row has neither (its notes say so). The raw dynamics have no direction (their
  target is the ground truth's value): shown, never ranked or coloured better or worse.
- **Columns by dimension** (:data:`DIMENSIONS`): quality, naturalness, synchronisation, identity,
  then the other headline metrics and the final score; the Markdown, CSV and HTML carry the same
  columns (:func:`table_columns`; the CSV adds every other metric with a direction after them).
- **Per speaker.** Each pair's speaker (its identity clip's, from the per-clip CSV's ``speaker``
  column or the dataset's ``manifest.jsonl``) splits every metric into speaker subgroups
  (:attr:`Row.by_speaker`), shown on demand in the HTML page.
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
from talking_faces.utils.normalise import (
    FINAL_SCORE,
    GT_EPSILON,
    GT_NORMALISED_METRICS,
    final_score,
    gt_normalised,
    norm_key,
)

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
#: the table's column groups, in order (a metric a group lacks is left out); after them come the
#: other headline metrics (``other``) and the final score (``score``)
DIMENSIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "quality",
        (
            "psnr",
            "ssim",
            "lpips",
            "cpbd",
            "fid",
            "face_l1_outside_mouth",
            "eyes_l1",
            "teeth_visible",
        ),
    ),
    (
        "naturalness",
        (
            "lip_dynamics",
            "lip_dynamics_norm",
            "head_motion_dynamics",
            "head_motion_dynamics_norm",
            "eyebrow_dynamics",
            "eyebrow_dynamics_norm",
        ),
    ),
    ("synchronisation", ("lse_d", "lse_c", "lmd", "silent_lip_mad", "silent_lip_mad_norm")),
    ("identity", ("csim_arcface", "csim_dlib")),
)
#: the keys the leaderboard computes itself (never read from a results file)
DERIVED = frozenset([*map(norm_key, GT_NORMALISED_METRICS), FINAL_SCORE])


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


def read_pair_speakers(results: dict[str, Any]) -> dict[int, str]:
    """Each scored pair's speaker: the per-clip CSV's ``speaker`` column where it has one, else
    its ``identity_clip_id`` looked up in the dataset's ``manifest.jsonl`` (when that file is
    readable here); empty when neither is."""
    path = per_clip_path(results)
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    manifest: dict[str, str] | None = None
    out: dict[int, str] = {}
    for row in rows:
        try:
            pair = int(row["pair"])
        except (KeyError, ValueError):
            continue
        speaker = row.get("speaker") or None
        if speaker is None and row.get("identity_clip_id"):
            if manifest is None:
                manifest = _manifest_speakers(results.get("dataset") or {})
            speaker = manifest.get(str(row["identity_clip_id"]))
        if speaker:
            out[pair] = str(speaker)
    return out


def _manifest_speakers(dataset: dict[str, Any]) -> dict[str, str]:
    """clip id -> speaker of the dataset's local ``manifest.jsonl``; empty when unreadable."""
    path = Path(str(dataset.get("path") or "")) / names.MANIFEST_FILE
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    out: dict[str, str] = {}
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and row.get("clip_id") and row.get("speaker"):
            out[str(row["clip_id"])] = str(row["speaker"])
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
    #: per speaker (see :attr:`Group.speakers`): each metric's mean over that speaker's pairs
    #: (normalised ones against the ground-truth row's mean over the same pairs)
    by_speaker: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def is_reference(self) -> bool:
        return self.kind == "baseline"

    @property
    def is_ground_truth(self) -> bool:
        """The ground-truth reference row (no audio shift): the normalisation's reference."""
        baseline = self.results[0].get("baseline") or {}
        return (
            self.is_reference
            and self.method == names.GROUND_TRUTH
            and not baseline.get("audio_shift")
        )


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
    #: the raw metrics normalised against the ground-truth row, in order: the final score's
    #: list (empty without a ground-truth row)
    normalised: list[str] = field(default_factory=list)
    #: lines shown under the table (what was not normalised and why)
    notes: list[str] = field(default_factory=list)
    #: the speakers of the group's pairs (sorted) and how many pairs each has
    speakers: dict[str, int] = field(default_factory=dict)

    @property
    def ground_truth(self) -> Row | None:
        return next((r for r in self.rows if r.is_ground_truth), None)

    @property
    def columns(self) -> list[str]:
        """The metric columns of the Markdown and HTML tables (and the CSV's first ones)."""
        return table_columns(self)

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


def _directions_and_metrics(members: list[dict[str, Any]]) -> tuple[dict[str, bool], list[str]]:
    """The group's metric directions and the metrics its rows have: every key with a direction
    and the raw :data:`GT_NORMALISED_METRICS` (no direction), headline ones first; what the
    leaderboard derives (:data:`DERIVED`) is never read from a file."""
    directions: dict[str, bool] = {}
    for r in members:
        for k, v in (r.get("higher_is_better") or {}).items():
            if v is not None and k not in DERIVED:
                directions.setdefault(k, bool(v))
    for k in DERIVED:
        directions[k] = True
    present = {k for r in members for k, v in r["metrics"].items() if _is_number(v)} - DERIVED
    metrics = sorted(k for k in set(directions) | set(GT_NORMALISED_METRICS) if k in present)
    metrics = [m for m in HEADLINE if m in metrics] + [m for m in metrics if m not in HEADLINE]
    return directions, metrics


def _rank(rows: list[Row], primary: str, higher: bool) -> list[Row]:
    """Rank the method rows on ``primary``, test each row against the best; the rows in table
    order (ranked methods, unscored methods, references)."""
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
    return [*scored, *unscored, *refs]


def build_group(members: list[dict[str, Any]]) -> Group:
    """Rows of one comparison group, ranked, normalised against its ground-truth row and split
    by speaker (see the module docstring)."""
    first = members[0]
    protocol = first["protocol"]
    directions, metrics = _directions_and_metrics(members)
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
    group = Group(
        key=comparison_key(first),
        dataset=first["dataset"],
        split=str(first["split"]),
        pairs=first["pairs"],
        protocol=protocol,
        primary=primary,
        directions=directions,
        metrics=metrics,
        rows=_rank(rows, primary, directions.get(primary, True)),
    )
    normalise_group(group)
    split_by_speaker(group, _pair_speakers(members, n_pairs))
    return group


# --------------------------------------------------------------------------------- normalisation
def normalised_interval(ci: tuple[float, float], gt_value: float) -> tuple[float, float]:
    """The image of a raw interval under :func:`gt_normalised` (the ground truth held fixed):
    its top is 1 when the interval holds the ground truth's value.

    >>> normalised_interval((0.5, 1.5), 1.0), normalised_interval((2.0, 3.0), 1.0)
    ((0.5, 1.0), (-1.0, 0.0))
    """
    ends = sorted(gt_normalised(v, gt_value) for v in ci)
    top = 1.0 if min(ci) <= gt_value <= max(ci) else ends[1]
    return ends[0], top


def _seed_std(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _normalise_row(row: Row, gt: Row, metrics: list[str]) -> None:
    """``<key>_norm`` of each of ``metrics`` the row has (mean, interval, std over seeds of the
    per-seed values) and, when it has them all, ``final_score``."""
    per_seed: list[dict[str, float]] = [{} for _ in row.results]
    for m in metrics:
        if m not in row.mean:
            continue
        g, k = gt.mean[m], norm_key(m)
        row.mean[k] = gt_normalised(row.mean[m], g)
        ci = row.ci.get(m)
        row.ci[k] = normalised_interval(ci, g) if ci else None
        for i, r in enumerate(row.results):
            v = r["metrics"].get(m)
            if _is_number(v):
                per_seed[i][k] = gt_normalised(float(v), g)
        row.std[k] = _seed_std([s[k] for s in per_seed if k in s])
    keys = [norm_key(m) for m in metrics]
    if keys and all(k in row.mean for k in keys):
        row.mean[FINAL_SCORE] = final_score(row.mean, keys)
        row.ci[FINAL_SCORE] = None
        row.std[FINAL_SCORE] = _seed_std(
            [final_score(s, keys) for s in per_seed if all(k in s for k in keys)]
        )


def normalise_group(group: Group) -> None:
    """Normalise every row of ``group`` against its ground-truth row (``group.normalised``, the
    final score's list); ``group.notes`` says what could not be normalised and why."""
    raw = [m for m in GT_NORMALISED_METRICS if m in group.metrics]
    if not raw:
        return
    gt = group.ground_truth
    if gt is None:
        group.notes.append(
            f"No {names.GROUND_TRUTH} row in this group, so no normalised columns and no "
            f"final score: {', '.join(raw)} are shown raw only (add `talking-faces evaluate "
            f"--baseline {names.GROUND_TRUTH}` under the same protocol and pairs)."
        )
        return
    for m in raw:
        ref = gt.mean.get(m)
        if ref is None or not abs(ref) > GT_EPSILON:
            why = "has no value" if ref is None else f"is {fmt(ref)}"
            group.notes.append(
                f"{m} is not normalised and not in the final score: the {names.GROUND_TRUTH} "
                f"row's value {why}."
            )
        else:
            group.normalised.append(m)
    for row in group.rows:
        _normalise_row(row, gt, group.normalised)
    if group.normalised:
        group.metrics += [norm_key(m) for m in group.normalised] + [FINAL_SCORE]


def final_score_text(group: Group) -> str:
    """The line beside the table that says what the final score averages."""
    keys = ", ".join(norm_key(m) for m in group.normalised)
    return (
        f"{FINAL_SCORE} = unweighted mean of {keys} (THEval: each 1 - |m - m_GT| / |m_GT| "
        f"against this group's {names.GROUND_TRUTH} row, not clipped; 1 is the ground truth). "
        "Normalised cells: the normalised mean [the raw interval's image, ground truth held "
        "fixed]."
    )


def undirected_text(group: Group) -> str | None:
    """The note on the raw metrics without a direction, when the group has any."""
    raw = [m for m in table_columns(group) if m not in group.directions]
    if not raw:
        return None
    return (
        f"{', '.join(raw)}: no direction (the target is the {names.GROUND_TRUTH} row's value); "
        "shown raw, neither ranked nor coloured better or worse."
    )


# --------------------------------------------------------------------------------- speakers
def _pair_speakers(members: list[dict[str, Any]], n_pairs: int) -> dict[int, str]:
    """Each pair's speaker, from the members' per-clip CSVs (the first that names all wins)."""
    out: dict[int, str] = {}
    for r in members:
        out.update({k: v for k, v in read_pair_speakers(r).items() if 0 <= k < n_pairs})
        if len(out) == n_pairs:
            break
    return out


def split_by_speaker(group: Group, pair_speakers: dict[int, str]) -> None:
    """Fill ``group.speakers`` and each row's ``by_speaker``: every metric with per-pair values
    averaged over each speaker's pairs; the normalised metrics and the final score against the
    ground-truth row's mean over the same pairs."""
    if not pair_speakers:
        return
    pairs = {
        s: np.array(sorted(p for p, sp in pair_speakers.items() if sp == s))
        for s in sorted(set(pair_speakers.values()))
    }
    group.speakers = {s: len(v) for s, v in pairs.items()}
    raw = [m for m in group.metrics if m not in DERIVED]
    for row in group.rows:
        for s, idx in pairs.items():
            values: dict[str, float] = {}
            for m in raw:
                per_pair = row.per_pair.get(m)
                x = per_pair[idx] if per_pair is not None else np.empty(0)
                x = x[np.isfinite(x)]
                if x.size:
                    values[m] = float(x.mean())
            row.by_speaker[s] = values
    gt, keys = group.ground_truth, [norm_key(m) for m in group.normalised]
    if gt is None or not keys:
        return
    for row in group.rows:
        for s, values in row.by_speaker.items():
            ref = gt.by_speaker[s]
            for m in group.normalised:
                if m in values and m in ref and abs(ref[m]) > GT_EPSILON:
                    values[norm_key(m)] = gt_normalised(values[m], ref[m])
            if all(k in values for k in keys):
                values[FINAL_SCORE] = final_score(values, keys)


# --------------------------------------------------------------------------------- columns
def _column_rank(metric: str) -> tuple[int, int]:
    for i, m in enumerate(m for _, dim in DIMENSIONS for m in dim):
        if m == metric:
            return (0, i)
    if metric == FINAL_SCORE:
        return (3, 0)
    if metric in HEADLINE:
        return (1, HEADLINE.index(metric))
    return (2, 0)


def table_columns(group: Group) -> list[str]:
    """The group's table columns: its metrics of :data:`DIMENSIONS`, the other headline
    metrics, the primary metric, the final score; in that order."""
    shown = {m for m in group.metrics if _column_rank(m)[0] != 2 or m == group.primary}
    return sorted(shown, key=lambda m: (_column_rank(m), m))


def dimension_of(metric: str) -> str:
    """The column group of ``metric``: a :data:`DIMENSIONS` name, ``score`` or ``other``."""
    for name, dim in DIMENSIONS:
        if metric in dim:
            return name
    return "score" if metric == FINAL_SCORE else "other"


def column_groups(columns: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``columns`` as consecutive runs of one dimension: ``[(dimension, [metric, ...]), ...]``."""
    out: list[tuple[str, list[str]]] = []
    for m in columns:
        d = dimension_of(m)
        if out and out[-1][0] == d:
            out[-1][1].append(m)
        else:
            out.append((d, [m]))
    return out


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


def heading(group: Group, metric: str) -> str:
    """A metric column's heading: its key and direction arrow (none for no direction)."""
    return f"{metric} {arrow(group, metric)}".rstrip()


def rank_text(row: Row) -> str:
    return str(row.rank) if row.rank is not None else ("ref" if row.is_reference else "–")


def table_notes(group: Group) -> list[str]:
    """The lines under a group's table: the final score's list, the metrics without a
    direction, what was not normalised."""
    lines = [final_score_text(group)] if group.normalised else []
    undirected = undirected_text(group)
    return lines + ([undirected] if undirected else []) + group.notes


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


def _markdown_group(n: int, g: Group) -> list[str]:
    """One group's section: heading, protocol card, columns by dimension, table, notes."""
    lines = [f"## {n}. {g.title}", ""]
    lines += [f"- {k}: {v}" for k, v in protocol_card(g)]
    shown = g.columns
    dims = "; ".join(f"{d}: {', '.join(ms)}" for d, ms in column_groups(shown))
    lines += [f"- columns by dimension: {dims}", ""]
    head = ["rank", "method", "seeds", *[heading(g, m) for m in shown]]
    head += [f"p ({g.primary})", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---:", "---", "---:"] + ["---"] * (len(head) - 3)) + "|")
    for r in g.rows:
        cells = [rank_text(r), r.label, str(len(r.seeds))]
        cells += [cell(r, m) for m in shown]
        cells += [fmt(r.p_value, 3) if r.p_value is not None else "–", status_text(r)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    notes = table_notes(g)
    if notes:
        lines += ["Notes:", "", *[f"- {x}" for x in notes], ""]
    return lines


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
        lines += _markdown_group(n, g)
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
def csv_metrics(board: Leaderboard) -> list[str]:
    """The CSV's metrics: the groups' table columns (:func:`table_columns`, in their order),
    then every other metric of the groups and the reported rows, by name."""
    shown = {m for g in board.groups for m in g.columns}
    rest = {m for g in board.groups for m in g.metrics} | {
        k for r in board.reported for k in r["metrics"]
    }
    return sorted(shown, key=lambda m: (_column_rank(m), m)) + sorted(rest - shown)


def to_csv(board: Leaderboard) -> str:
    """One line per row of every group (each metric of :func:`csv_metrics`: mean, std over
    seeds, interval bounds; ``final_score_of``: the normalised metrics the final score averages;
    ``notes``: the table's notes) and one per reported row (``source`` reported)."""
    metrics = csv_metrics(board)
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
        "final_score_of",
        "notes",
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
                " ".join(norm_key(m) for m in g.normalised),
                " ".join(table_notes(g)),
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
        line += ["", ""]
        for m in metrics:
            line += [_num(rep["metrics"].get(m)), "", "", ""]
        w.writerow(line)
    return buf.getvalue()


def _num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6g}"


__all__ = [
    "DIMENSIONS",
    "Group",
    "Leaderboard",
    "Row",
    "bootstrap_ci",
    "build_group",
    "build_leaderboard",
    "column_groups",
    "csv_metrics",
    "default_reported",
    "find_results",
    "load_reported",
    "paired_test",
    "normalise_group",
    "read_pair_speakers",
    "read_per_clip",
    "row_key",
    "split_by_speaker",
    "table_columns",
    "to_csv",
    "to_markdown",
]

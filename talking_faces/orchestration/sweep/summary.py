"""The sweep's summary: each configuration with mean ± std over its seeds, best first.

trial folders (results JSON) -> **summarize** -> ``summary.csv`` + ``summary.md`` in the sweep
folder (rewritten after every sweep command, so they show whatever has finished so far)

A configuration's row holds, for the sweep's target metric (``metric.name`` of the file) and for
every metric the results give a direction for (``higher_is_better``), the mean and the sample
standard deviation (ddof 1) over its finished seeds; rows are ranked by the target's mean in the
direction of ``metric.goal``. The leaderboard (``talking-faces leaderboard SWEEP_DIR``) adds
confidence intervals over test pairs and paired tests.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talking_faces.errors import UserError
from talking_faces.evaluation.results import load_results
from talking_faces.names import HEADLINE_METRICS
from talking_faces.orchestration.sweep.spec import SweepSpec, Trial, format_value
from talking_faces.orchestration.sweep.trial import RESULTS_FILE, trial_status
from talking_faces.utils.io import write_text_atomic


@dataclass
class ConfigRow:
    """One configuration of the sweep and what its seeds gave."""

    config_id: str
    swept: dict[str, Any]
    seeds: list[int]
    status: dict[str, int] = field(default_factory=dict)
    #: metric -> its value for each finished seed
    values: dict[str, list[float]] = field(default_factory=dict)

    def mean(self, metric: str) -> float | None:
        v = self.values.get(metric) or []
        return sum(v) / len(v) if v else None

    def std(self, metric: str) -> float | None:
        v = self.values.get(metric) or []
        if len(v) < 2:
            return None
        m = sum(v) / len(v)
        return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def _metric_values(results: dict[str, Any]) -> dict[str, float]:
    out = {
        k: float(v)
        for k, v in results["metrics"].items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    for k, v in (results.get("method_metrics") or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"method_metrics.{k}"] = float(v)
    return out


def summarize(
    spec: SweepSpec, trials: Sequence[Trial], sweep_dir: Path
) -> tuple[list[ConfigRow], list[str], dict[str, bool | None]]:
    """Rows (best first), the metric columns, and each metric's direction."""
    rows: dict[str, ConfigRow] = {}
    directions: dict[str, bool | None] = {}
    for trial in trials:
        row = rows.setdefault(trial.config_id, ConfigRow(trial.config_id, trial.swept, []))
        row.seeds.append(trial.seed)
        folder = sweep_dir / "trials" / trial.name
        status = trial_status(folder)
        row.status[status] = row.status.get(status, 0) + 1
        if status != "done":
            continue
        results = load_results(folder / RESULTS_FILE)[0]
        for k, v in (results.get("higher_is_better") or {}).items():
            directions.setdefault(k, v)
        for k, v in _metric_values(results).items():
            row.values.setdefault(k, []).append(v)
    shown = {k for k, d in directions.items() if d is not None}
    shown |= {k for r in rows.values() for k in r.values if k.startswith("method_metrics.")}
    if spec.metric:
        shown.add(spec.metric)
    present = {k for r in rows.values() for k in r.values}
    # the leaderboard's headline metrics first, in its order, then the rest by name
    columns = [m for m in HEADLINE_METRICS if m in shown and m in present]
    columns += sorted(m for m in shown & present if m not in columns)
    if spec.metric in columns:
        columns.remove(spec.metric)
        columns.insert(0, spec.metric)
    elif spec.metric and present:
        raise UserError(
            f"sweep {spec.path}: the target metric {spec.metric!r} is not in the trials' results "
            f"(they have {', '.join(sorted(present))}); fix metric.name"
        )
    ordered = list(rows.values())
    metric = spec.metric
    if metric:
        sign = -1.0 if spec.goal == "maximize" else 1.0
        ordered.sort(key=lambda r: (r.mean(metric) is None, sign * (r.mean(metric) or 0.0)))
    return ordered, columns, directions


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def _cell(row: ConfigRow, metric: str) -> str:
    mean, std = row.mean(metric), row.std(metric)
    if mean is None:
        return "–"
    return f"{mean:.4g} ± {std:.2g}" if std is not None else f"{mean:.4g}"


def _seeds_cell(row: ConfigRow) -> str:
    done = row.status.get("done", 0)
    extra = [f"{n} {s}" for s, n in sorted(row.status.items()) if s != "done" and n]
    return f"{done}/{len(row.seeds)}" + (f" ({', '.join(extra)})" if extra else "")


def summary_markdown(
    spec: SweepSpec,
    rows: Sequence[ConfigRow],
    columns: Sequence[str],
    extra_overrides: Sequence[str],
) -> str:
    """``summary.md``: what ran, then one row per configuration, best first."""
    counts: dict[str, int] = {}
    for r in rows:
        for status, n in r.status.items():
            counts[status] = counts.get(status, 0) + n
    total = sum(counts.values())
    state = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "running", "failed", "pending"))
    s = spec.settings
    lines = [
        f"# Sweep `{spec.name}`",
        "",
        f"- file: `{spec.path}` (sha256 `{spec.sha256[:12]}`), method {spec.method}: "
        f"{len(rows)} configurations x {len(s.seeds)} seeds = {total} trials ({state})",
        f"- trials: `talking-faces fit {' '.join(s.configs)}` on `{s.data}`, then "
        f"`evaluate --protocol {s.protocol} --samples {s.samples}` on its fixed test pairs",
        f"- command-line overrides: {' '.join(f'`{o}`' for o in extra_overrides) or 'none'}",
    ]
    if spec.metric:
        lines.append(
            f"- ranked by **{spec.metric}** ({spec.goal}); cells: mean ± sample std over seeds"
        )
    lines.append("")
    keys = list(dict.fromkeys(k for r in rows for k in r.swept))
    head = ["rank", *keys, "seeds", *[f"**{c}**" if c == spec.metric else c for c in columns]]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---:"] + ["---"] * (len(head) - 1)) + "|")
    for i, r in enumerate(rows, 1):
        cells = [str(i), *[format_value(r.swept[k]) if k in r.swept else "" for k in keys]]
        cells.append(_seeds_cell(r))
        for c in columns:
            cell = _cell(r, c)
            cells.append(f"**{cell}**" if c == spec.metric and cell != "–" else cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_csv(rows: Sequence[ConfigRow], columns: Sequence[str]) -> str:
    """``summary.csv``: rank, the swept values, seed counts, mean and std of every metric."""
    keys = list(dict.fromkeys(k for r in rows for k in r.swept))
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["rank", "config_id", *keys, "seeds", "done", "failed"]
    for c in columns:
        header += [f"{c}_mean", f"{c}_std"]
    writer.writerow(header)
    for i, r in enumerate(rows, 1):
        line = [
            i,
            r.config_id[:12],
            *[format_value(r.swept[k]) if k in r.swept else "" for k in keys],
        ]
        line += [len(r.seeds), r.status.get("done", 0), r.status.get("failed", 0)]
        for c in columns:
            line += [_fmt(r.mean(c)), _fmt(r.std(c))]
        writer.writerow(line)
    return buf.getvalue()


def write_summary(
    spec: SweepSpec, trials: Sequence[Trial], sweep_dir: Path, extra_overrides: Sequence[str]
) -> tuple[Path, Path, list[ConfigRow]]:
    """Write ``summary.md`` and ``summary.csv`` atomically; return their paths and the rows."""
    rows, columns, _ = summarize(spec, trials, sweep_dir)
    md, csv_path = sweep_dir / "summary.md", sweep_dir / "summary.csv"
    write_text_atomic(md, summary_markdown(spec, rows, columns, extra_overrides))
    write_text_atomic(csv_path, summary_csv(rows, columns))
    return md, csv_path, rows


__all__ = ["ConfigRow", "summarize", "summary_csv", "summary_markdown", "write_summary"]

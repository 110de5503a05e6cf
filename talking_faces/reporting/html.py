"""The leaderboard as one self-contained HTML page (no external script, style sheet or font).

:class:`talking_faces.reporting.leaderboard.Leaderboard` -> **to_html** -> ``leaderboard.html``: per
group the protocol card, a table whose columns are grouped by dimension (quality, naturalness,
synchronisation, identity, other, score; sortable by clicking a header; it wraps each interval
under its mean and scrolls sideways inside the page when still too wide, the method column kept in
view), the table's notes (the final score's list), each row's ground-truth-normalised profile as an
inline-SVG bar chart, one bar chart per metric with the 95% intervals as whiskers (scaled to the
method rows, so a reference row's capped value — the ground truth's 100 dB PSNR — does not flatten
them: bars beyond the scale are cut and marked), every metric per speaker in a ``<details>``
element, and each row's sample video (real | generated, with audio) when its results point to one:
embedded as a data URI up to :data:`EMBED_LIMIT` bytes, linked (relative to the page) above it.
Then the paper-reported rows, apart.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Callable
from pathlib import Path

from talking_faces.reporting.leaderboard import (
    Group,
    Leaderboard,
    Row,
    cell,
    column_groups,
    fmt,
    heading,
    protocol_card,
    rank_text,
    status_text,
    table_notes,
)
from talking_faces.utils.normalise import FINAL_SCORE, norm_key

#: videos up to this size are embedded in the page; larger ones are linked
EMBED_LIMIT = 2 * 1024 * 1024
#: bar colours: the best method on the primary metric, the other methods, reference rows, and
#: every row of a metric without a direction (nothing to be better at)
BEST, METHOD, REFERENCE, NEUTRAL = "#0a66c2", "#6ea8e6", "#9aa0a6", "#b59ad6"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.6em; } h2 { font-size: 1.15em; margin-top: 2.2em; overflow-wrap: anywhere; }
h3 { font-size: 1em; margin-top: 1.4em; }
p.note, ul.notes { color: #555; font-size: 0.9em; max-width: 60em; }
p.banner { background: #fff3cd; color: #333; padding: 0.6em 1em; border-radius: 6px; }
dl.card { display: grid; grid-template-columns: max-content 1fr; gap: 0.15em 1em;
          font-size: 0.85em; background: #f5f5f7; padding: 0.7em 1em; border-radius: 6px; }
dl.card dt { font-weight: 600; } dl.card dd { margin: 0; overflow-wrap: anywhere; }
div.scroll { overflow-x: auto; max-width: 100%; border-right: 1px solid #eee; }
table.lb { border-collapse: collapse; font-size: 0.8em; margin: 1em 0; }
table.lb th, table.lb td { border-bottom: 1px solid #ddd; padding: 0.3em 0.45em;
                           text-align: right; vertical-align: top; }
table.lb td span { white-space: nowrap; }
table.lb td span.ci { display: block; color: #777; font-size: 0.85em; }
table.lb td.label, table.lb th.label { text-align: left; white-space: nowrap;
                                       position: sticky; left: 0; background: #fff; z-index: 1; }
table.lb thead th, table.lb thead th.label { background: #fafafa; }
p.hint { font-size: 0.8em; color: #0a66c2; margin: 0.6em 0 -0.6em; text-align: right; }
table.lb tr.cols th { cursor: pointer; user-select: none; max-width: 7.5em; }
table.lb tr.dims th { text-align: center; font-weight: 600; font-size: 0.9em;
                      border-bottom: 2px solid #ccc; }
table.lb tr.dims th.quality { border-color: #4c8bf5; }
table.lb tr.dims th.naturalness { border-color: #9c6ade; }
table.lb tr.dims th.synchronisation { border-color: #2e9e6a; }
table.lb tr.dims th.identity { border-color: #e3a008; }
table.lb tr.dims th.score { border-color: #1d1d1f; }
table.lb th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.lb th[aria-sort="descending"]::after { content: " \\25BC"; }
tr.reference td { color: #666; font-style: italic; }
tr.best td { font-weight: 600; }
.charts, .profiles { display: flex; flex-wrap: wrap; gap: 1em; }
.charts figure, .profiles figure { margin: 0; }
.charts figcaption, .videos figcaption, .profiles figcaption { font-size: 0.8em; color: #444;
                                                              max-width: 560px; }
details.speakers { margin: 1em 0; } details.speakers summary { cursor: pointer; }
.videos { display: flex; flex-wrap: wrap; gap: 1em; margin-top: 1em; }
.videos figure { margin: 0; }
svg text { font-size: 11px; fill: #333; }
"""

_JS = """
document.querySelectorAll("div.scroll").forEach(function (box) {
  var hint = box.previousElementSibling;
  if (!hint || !hint.classList.contains("hint")) { return; }
  var mark = function () {
    var more = box.scrollWidth - box.clientWidth - box.scrollLeft;
    hint.hidden = box.scrollWidth <= box.clientWidth + 1;
    hint.textContent = more > 1 ? "more columns to the right: scroll the table sideways \u2192"
                                : "\u2190 scroll the table back";
  };
  mark();
  box.addEventListener("scroll", mark);
  window.addEventListener("resize", mark);
});
document.querySelectorAll("table.lb").forEach(function (table) {
  var heads = table.querySelectorAll("thead tr.cols th");
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
        var nx = parseFloat(x), ny = parseFloat(y);
        var missing = function (v) { return v === null || v === ""; };
        if (missing(x) !== missing(y)) { return missing(x) ? 1 : -1; }
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _breakable(text: str) -> str:
    """Escaped ``text`` with a line-break opportunity after each underscore (long keys)."""
    return "_<wbr>".join(_e(part) for part in text.split("_"))


def _sort_value(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def _cell_html(row: Row, metric: str) -> str:
    """The cell's text with its interval (the part in brackets) on a line of its own."""
    text = cell(row, metric)
    value, sep, ci = text.partition(" [")
    out = f"<span>{_e(value)}</span>"
    return out + (f'<span class="ci">[{_e(ci)}</span>' if sep else "")


def _table_head(group: Group, shown: list[str]) -> str:
    """Two header rows: the dimensions (spanning their columns), then the columns."""
    dims = ['<tr class="dims"><th colspan="3"></th>']
    for dim, metrics in column_groups(shown):
        dims.append(f'<th class="{_e(dim)}" colspan="{len(metrics)}">{_e(dim)}</th>')
    dims.append('<th colspan="2"></th></tr>')
    head = ["rank", "method", "seeds", *[heading(group, m) for m in shown]]
    head += [f"p ({group.primary})", ""]
    cols = ['<tr class="cols">']
    for i, h in enumerate(head):
        cls = ' class="label"' if i == 1 else ""
        data = f' data-metric="{_e(shown[i - 3])}"' if 3 <= i < 3 + len(shown) else ""
        cols.append(f"<th{cls}{data}>{_breakable(h)}</th>")
    cols.append("</tr>")
    return "<thead>" + "".join(dims) + "".join(cols) + "</thead>"


def _table(group: Group, shown: list[str], gid: int) -> str:
    out = [
        '<p class="hint" hidden></p>',
        f'<div class="scroll"><table class="lb" id="table-{gid}">',
        _table_head(group, shown),
    ]
    out.append("<tbody>")
    for r in group.rows:
        cls = "reference" if r.is_reference else "best" if r.best else "method"
        rank_sort = str(r.rank) if r.rank is not None else ""
        out.append(f'<tr class="{cls}">')
        out.append(f'<td data-sort="{_e(rank_sort)}">{_e(rank_text(r))}</td>')
        out.append(f'<td class="label" data-sort="{_e(r.label)}">{_e(r.label)}</td>')
        out.append(f'<td data-sort="{len(r.seeds)}">{len(r.seeds)}</td>')
        for m in shown:
            out.append(f'<td data-sort="{_sort_value(r.mean.get(m))}">{_cell_html(r, m)}</td>')
        p = r.p_value
        out.append(
            f'<td data-sort="{_sort_value(p)}">{_e(fmt(p, 3) if p is not None else "–")}</td>'
        )
        out.append(f'<td data-sort="{_e(status_text(r))}">{_e(status_text(r))}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _extent(row: Row, metric: str) -> tuple[float, float]:
    """The row's interval of ``metric``, or its mean at both ends where it has none."""
    ci = row.ci.get(metric)
    return ci if ci else (row.mean[metric], row.mean[metric])


def chart_scale(group: Group, metric: str) -> tuple[float, float]:
    """The value range a metric's bar chart spans: the range of the method rows' intervals
    (with no method row: of the reference rows but the ground truth; with neither: of every
    row), from zero when zero is within one such range of it, else padded by a tenth of it on
    both sides. A reference's value beyond it (the ground truth's 100 dB PSNR cap) is cut at the
    edge, so it cannot flatten the methods' bars."""
    rows = [r for r in group.rows if metric in r.mean]
    for pick in (lambda r: not r.is_reference, lambda r: not r.is_ground_truth, lambda r: True):
        scale = [r for r in rows if pick(r)]
        if scale:
            break
    lo = min(_extent(r, metric)[0] for r in scale)
    hi = max(_extent(r, metric)[1] for r in scale)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    if lo - span <= 0.0 <= hi + span:  # zero is near: the bars start at it
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        return lo, hi if hi > lo else lo + 1.0
    return lo - 0.1 * span, hi + 0.1 * span


def _bar_colour(group: Group, row: Row, metric: str) -> str:
    if metric not in group.directions:
        return NEUTRAL
    return REFERENCE if row.is_reference else BEST if row.best else METHOD


def _chart(group: Group, metric: str) -> str:
    """Horizontal bars (means) with interval whiskers, one per row that has the metric."""
    rows = [r for r in group.rows if metric in r.mean]
    if not rows:
        return ""
    label_w, bar_w, row_h, pad = 190, 300, 22, 8
    width, height = label_w + bar_w + 70, pad * 2 + row_h * len(rows) + 14
    lo, hi = chart_scale(group, metric)

    def x(v: float) -> float:
        return label_w + (min(max(v, lo), hi) - lo) / (hi - lo) * bar_w

    parts = [
        f'<svg class="chart" data-metric="{_e(metric)}" data-bar-width="{bar_w}" '
        f'width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(metric)} by row">'
    ]
    for i, r in enumerate(rows):
        parts += _bar(group, r, metric, pad + i * row_h, row_h, x, (lo, hi))
        parts.append(
            f'<text x="{label_w - 6}" y="{pad + i * row_h + row_h * 0.65:.1f}" '
            f'text-anchor="end">{_e(r.label[:30])}</text>'
        )
        parts.append(
            f'<text x="{label_w + bar_w + 6}" y="{pad + i * row_h + row_h * 0.65:.1f}">'
            f"{_e(fmt(r.mean[metric]))}</text>"
        )
    axis_y = pad + row_h * len(rows) + 10
    parts.append(f'<text x="{label_w}" y="{axis_y}" text-anchor="start">{_e(fmt(lo))}</text>')
    parts.append(f'<text x="{label_w + bar_w}" y="{axis_y}" text-anchor="end">{_e(fmt(hi))}</text>')
    parts.append("</svg>")
    caption = f"{heading(group, metric)}: mean and 95% interval over test pairs"
    if metric not in group.directions:
        caption += "; no direction (the target is the ground truth's value)"
    if lo > 0.0 or hi < 0.0:
        caption += f"; the axis spans {fmt(lo)} to {fmt(hi)}, not from zero"
    if any(not (lo <= v <= hi) for r in rows for v in _extent(r, metric)):
        caption += "; bars and whiskers beyond the scale (of the method rows) are cut at its edge"
    return f"<figure>{''.join(parts)}<figcaption>{_e(caption)}</figcaption></figure>"


def _bar(
    group: Group,
    r: Row,
    metric: str,
    y: float,
    row_h: float,
    x: Callable[[float], float],
    scale: tuple[float, float],
) -> list[str]:
    """One row's bar (cut and marked when beyond ``scale``) and interval whisker."""
    lo, hi = scale
    mean = r.mean[metric]
    x0, x1 = x(0.0 if lo <= 0.0 <= hi else lo), x(mean)
    left, w = min(x0, x1), max(abs(x1 - x0), 1.0)
    cut = not lo <= mean <= hi
    parts = [
        f'<rect class="bar{" cut" if cut else ""}" x="{left:.1f}" y="{y + 3}" width="{w:.1f}" '
        f'height="{row_h - 6}" fill="{_bar_colour(group, r, metric)}">'
        f"<title>{_e(r.label)}: {_e(cell(r, metric))}</title></rect>"
    ]
    if cut:  # a chevron at the scale's edge, pointing on: the value lies beyond
        tip, back = (x1 - 2, x1 - 8) if mean > hi else (x1 + 2, x1 + 8)
        stroke = "#fff" if mean > hi else "#222"
        parts.append(
            f'<polyline class="cut" points="{back:.1f},{y + 4} {tip:.1f},{y + row_h / 2} '
            f'{back:.1f},{y + row_h - 4}" fill="none" stroke="{stroke}" stroke-width="2"/>'
        )
    ci = r.ci.get(metric)
    if ci is not None:
        cy = y + row_h / 2
        parts.append(
            f'<line class="ci" x1="{x(ci[0]):.1f}" x2="{x(ci[1]):.1f}" y1="{cy}" y2="{cy}" '
            'stroke="#222" stroke-width="1.5"/>'
        )
        for v in ci:
            if lo <= v <= hi:
                parts.append(
                    f'<line class="ci" x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{cy - 5}" '
                    f'y2="{cy + 5}" stroke="#222" stroke-width="1.5"/>'
                )
    return parts


def _profile(group: Group, row: Row, keys: list[str], scale: tuple[float, float]) -> str:
    """One row's normalised profile: a bar per normalised metric and the final score, on the
    group's common scale, the ground truth's 1 marked."""
    lo, hi = scale
    label_w, bar_w, row_h, pad = 170, 200, 18, 6
    width, height = label_w + bar_w + 50, pad * 2 + row_h * len(keys) + 12

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * bar_w

    parts = [
        f'<svg class="profile" data-row="{_e(row.label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="normalised profile">'
    ]
    for i, k in enumerate(keys):
        y = pad + i * row_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y + row_h * 0.7:.1f}" text-anchor="end">{_e(k)}</text>'
        )
        v = row.mean.get(k)
        if v is not None and math.isfinite(v):
            x0, x1 = x(0.0), x(v)
            colour = "#1d1d1f" if k == FINAL_SCORE else NEUTRAL
            parts.append(
                f'<rect class="bar" data-key="{_e(k)}" x="{min(x0, x1):.1f}" y="{y + 3}" '
                f'width="{max(abs(x1 - x0), 1.0):.1f}" height="{row_h - 6}" fill="{colour}">'
                f"<title>{_e(row.label)}: {_e(k)} {_e(fmt(v))}</title></rect>"
            )
            parts.append(
                f'<text x="{label_w + bar_w + 4}" y="{y + row_h * 0.7:.1f}">{fmt(v, 3)}</text>'
            )
    one, bottom = x(1.0), pad + row_h * len(keys)
    parts.append(
        f'<line class="gt" x1="{one:.1f}" x2="{one:.1f}" y1="{pad}" y2="{bottom}" '
        'stroke="#222" stroke-dasharray="3,2"/>'
    )
    parts.append(f'<text x="{one:.1f}" y="{bottom + 10}" text-anchor="middle">1 = GT</text>')
    parts.append("</svg>")
    return f"<figure>{''.join(parts)}<figcaption>{_e(row.label)}</figcaption></figure>"


def _profiles(group: Group) -> str:
    """Each row's normalised profile, or nothing when the group has no normalised metric."""
    if not group.normalised:
        return ""
    keys = [norm_key(m) for m in group.normalised] + [FINAL_SCORE]
    values = [r.mean[k] for r in group.rows for k in keys if k in r.mean]
    scale = (min([0.0, *values]), max([1.0, *values]))
    figures = [_profile(group, r, keys, scale) for r in group.rows]
    return (
        "<h3>Normalised profile (1 = the ground truth; THEval's closeness to it)</h3>"
        f'<div class="profiles">{"".join(figures)}</div>'
    )


def _speakers(group: Group, shown: list[str], gid: int) -> str:
    """Every column's metric per speaker (rows x speakers), folded in a ``<details>``."""
    if not group.speakers:
        return (
            '<p class="note">No per-speaker breakdown: the per-clip CSVs name no speaker and '
            f"the dataset's manifest.jsonl ({_e(group.dataset.get('path'))}) is not readable "
            "here.</p>"
        )
    speakers = list(group.speakers)
    out = [
        f'<details class="speakers" id="speakers-{gid}"><summary>Per speaker: every metric '
        f"over each speaker's pairs ({len(speakers)} speakers; normalised ones against the "
        "ground truth's mean over the same pairs)</summary>"
    ]
    for m in shown:
        if not any(m in r.by_speaker.get(s, {}) for r in group.rows for s in speakers):
            continue
        out.append(f'<h4>{_e(heading(group, m))}</h4><div class="scroll">')
        out.append(f'<table class="lb speaker" data-metric="{_e(m)}"><thead><tr class="cols">')
        out.append('<th class="label">method</th>')
        out += [f"<th>{_e(s)} ({group.speakers[s]})</th>" for s in speakers]
        out.append("</tr></thead><tbody>")
        for r in group.rows:
            out.append(f'<tr><td class="label" data-sort="{_e(r.label)}">{_e(r.label)}</td>')
            for s in speakers:
                v = r.by_speaker.get(s, {}).get(m)
                out.append(f'<td data-sort="{_sort_value(v)}">{_e(fmt(v))}</td>')
            out.append("</tr>")
        out.append("</tbody></table></div>")
    out.append("</details>")
    return "".join(out)


def _video(row: Row, page_dir: Path) -> str:
    v = row.video
    if not v:
        return ""
    path = Path(v["file"])
    caption = f"{row.label}: {v.get('layout', 'real | generated')} ({v.get('clip_id')})"
    if path.stat().st_size <= EMBED_LIMIT:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        src = f"data:video/mp4;base64,{data}"
        return (
            f'<figure><video controls preload="metadata" width="256" src="{src}"></video>'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    rel = os.path.relpath(path, page_dir)
    return (
        f'<figure><a href="{_e(rel)}">{_e(rel)}</a><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _group_section(n: int, g: Group, page_dir: Path) -> str:
    """One group: card, table, notes, normalised profiles, charts, per speaker, videos."""
    shown = g.columns
    body = [f'<section class="group" id="group-{n}"><h2>{n}. {_e(g.title)}</h2>']
    body.append('<dl class="card">')
    for k, v in protocol_card(g):
        body.append(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>")
    body.append("</dl>")
    body.append(_table(g, shown, n))
    notes = table_notes(g)
    if notes:
        body.append('<ul class="notes">' + "".join(f"<li>{_e(x)}</li>" for x in notes) + "</ul>")
    body.append(_profiles(g))
    body.append("<h3>Each metric by row</h3>")
    body.append('<div class="charts">' + "".join(_chart(g, m) for m in shown) + "</div>")
    body.append(_speakers(g, shown, n))
    videos = [_video(r, page_dir) for r in g.rows if r.video]
    if videos:
        body.append("<h3>Sample videos (real | generated, with the audio)</h3>")
        body.append('<div class="videos">' + "".join(videos) + "</div>")
    body.append("</section>")
    return "".join(body)


def _reported(board: Leaderboard) -> str:
    """The paper-reported rows' table (never ranked), or why there is none."""
    if not board.reported:
        return (
            '<p class="note">None: experiments/leaderboard/reported.yaml lists only numbers '
            "that can be cited with their table, and none could be read from the papers yet.</p>"
        )
    names = sorted({k for r in board.reported for k in r["metrics"]})
    body = ['<div class="scroll"><table class="lb" id="table-reported"><thead><tr class="cols">']
    for h in ["method", "dataset", "protocol", *names, "source"]:
        body.append(f'<th style="text-align: left">{_e(h)}</th>')
    body.append("</tr></thead><tbody>")
    for r in board.reported:
        body.append('<tr class="reported">')
        for v in (r["method"], r["dataset"], r["protocol"]):
            body.append(f'<td style="text-align: left" data-sort="{_e(v)}">{_e(v)}</td>')
        for k in names:
            val = r["metrics"].get(k)
            body.append(f'<td data-sort="{_sort_value(val)}">{_e(fmt(val))}</td>')
        src = f"{r['citation']}, {r['table']} (reported)"
        body.append(f'<td style="text-align: left" data-sort="{_e(src)}">{_e(src)}</td></tr>')
    body.append("</tbody></table></div>")
    return "".join(body)


def to_html(board: Leaderboard, page_path: str | os.PathLike[str]) -> str:
    """The page for ``board``; ``page_path`` (where it will be written) anchors video links."""
    page_dir = Path(page_path).resolve().parent
    body = [f"<h1>{_e(board.title)}</h1>"]
    if board.note:
        body.append(f'<p class="note banner"><strong>{_e(board.note)}</strong></p>')
    body += [
        f'<p class="note">{board.num_results} results in {len(board.groups)} group(s). A group is '
        "one dataset, split, pair list and protocol; rows of different groups are never "
        "compared. Cells: mean over test pairs [95% bootstrap interval over pairs]; rows of "
        "several seeds: mean ± std over seeds. p: two-sided Wilcoxon signed-rank test over "
        "pairs against the best method on the group's primary metric; ≈ best: not different "
        "at 0.05. Click a column header to sort.</p>",
    ]
    body += [_group_section(n, g, page_dir) for n, g in enumerate(board.groups, 1)]
    body.append("<h2>Reported in papers (not measured here; never ranked)</h2>")
    body.append(_reported(board))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(board.title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + f"<script>{_JS}</script></body></html>\n"
    )


__all__ = ["EMBED_LIMIT", "chart_scale", "to_html"]

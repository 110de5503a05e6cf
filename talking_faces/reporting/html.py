"""The leaderboard as one self-contained HTML page (no external script, style sheet or font).

:class:`talking_faces.reporting.leaderboard.Leaderboard` -> **to_html** -> ``leaderboard.html``: per
group the protocol card, a table sortable by clicking a header, one inline-SVG bar chart per metric
with the 95% intervals as whiskers, and each row's sample video (real | generated, with audio)
when its results point to one: embedded as a data URI up to :data:`EMBED_LIMIT` bytes, linked
(relative to the page) above it. Then the paper-reported rows, apart.
"""

from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path

from talking_faces.reporting.leaderboard import (
    HEADLINE,
    Group,
    Leaderboard,
    Row,
    arrow,
    cell,
    fmt,
    protocol_card,
    status_text,
)

#: videos up to this size are embedded in the page; larger ones are linked
EMBED_LIMIT = 2 * 1024 * 1024

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.6em; } h2 { font-size: 1.15em; margin-top: 2.2em; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
p.banner { background: #fff3cd; color: #333; padding: 0.6em 1em; border-radius: 6px; }
dl.card { display: grid; grid-template-columns: max-content 1fr; gap: 0.15em 1em;
          font-size: 0.85em; background: #f5f5f7; padding: 0.7em 1em; border-radius: 6px; }
dl.card dt { font-weight: 600; } dl.card dd { margin: 0; }
div.scroll { overflow-x: auto; }
table.lb { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
table.lb th, table.lb td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right;
                           white-space: nowrap; }
table.lb td.label, table.lb th.label { text-align: left; }
table.lb th { cursor: pointer; user-select: none; background: #fafafa; }
table.lb th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.lb th[aria-sort="descending"]::after { content: " \\25BC"; }
tr.reference td { color: #666; font-style: italic; }
tr.best td { font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.charts figure { margin: 0; }
.charts figcaption, .videos figcaption { font-size: 0.8em; color: #444; }
.videos { display: flex; flex-wrap: wrap; gap: 1em; margin-top: 1em; }
.videos figure { margin: 0; }
svg text { font-size: 11px; fill: #333; }
"""

_JS = """
document.querySelectorAll("table.lb").forEach(function (table) {
  var heads = table.querySelectorAll("thead th");
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


def _sort_value(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def _table(group: Group, shown: list[str], gid: int) -> str:
    head = ["rank", "method", "seeds", *[f"{m} {arrow(group, m)}" for m in shown]]
    head += [f"p ({group.primary})", ""]
    out = [f'<div class="scroll"><table class="lb" id="table-{gid}"><thead><tr>']
    for i, h in enumerate(head):
        cls = ' class="label"' if i == 1 else ""
        out.append(f"<th{cls}>{_e(h)}</th>")
    out.append("</tr></thead><tbody>")
    for r in group.rows:
        cls = "reference" if r.is_reference else "best" if r.best else "method"
        rank = str(r.rank) if r.rank is not None else ("ref" if r.is_reference else "–")
        rank_sort = str(r.rank) if r.rank is not None else ""
        out.append(f'<tr class="{cls}">')
        out.append(f'<td data-sort="{_e(rank_sort)}">{_e(rank)}</td>')
        out.append(f'<td class="label" data-sort="{_e(r.label)}">{_e(r.label)}</td>')
        out.append(f'<td data-sort="{len(r.seeds)}">{len(r.seeds)}</td>')
        for m in shown:
            out.append(f'<td data-sort="{_sort_value(r.mean.get(m))}">{_e(cell(r, m))}</td>')
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


def _chart(group: Group, metric: str) -> str:
    """Horizontal bars (means) with interval whiskers, one per row that has the metric."""
    rows = [r for r in group.rows if metric in r.mean]
    if not rows:
        return ""
    label_w, bar_w, row_h, pad = 190, 300, 22, 8
    width, height = label_w + bar_w + 70, pad * 2 + row_h * len(rows) + 14
    lo = min([0.0] + [_extent(r, metric)[0] for r in rows])
    hi = max([_extent(r, metric)[1] for r in rows] + [lo])
    span = hi - lo if hi > lo else 1.0

    def x(v: float) -> float:
        return label_w + (v - lo) / span * bar_w

    parts = [
        f'<svg class="chart" data-metric="{_e(metric)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(metric)} by row">'
    ]
    for i, r in enumerate(rows):
        y = pad + i * row_h
        colour = "#9aa0a6" if r.is_reference else "#0a66c2" if r.best else "#6ea8e6"
        x0, x1 = x(max(lo, 0.0) if lo < 0 < hi else lo), x(r.mean[metric])
        left, w = min(x0, x1), max(abs(x1 - x0), 1.0)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + row_h * 0.65:.1f}" text-anchor="end">'
            f"{_e(r.label[:30])}</text>"
        )
        parts.append(
            f'<rect class="bar" x="{left:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{colour}"><title>{_e(r.label)}: {_e(cell(r, metric))}</title></rect>'
        )
        ci = r.ci.get(metric)
        if ci is not None:
            cy = y + row_h / 2
            parts.append(
                f'<line class="ci" x1="{x(ci[0]):.1f}" x2="{x(ci[1]):.1f}" y1="{cy}" y2="{cy}" '
                'stroke="#222" stroke-width="1.5"/>'
            )
            for v in ci:
                parts.append(
                    f'<line class="ci" x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{cy - 5}" '
                    f'y2="{cy + 5}" stroke="#222" stroke-width="1.5"/>'
                )
        parts.append(
            f'<text x="{label_w + bar_w + 6}" y="{y + row_h * 0.65:.1f}">'
            f"{_e(fmt(r.mean[metric]))}</text>"
        )
    axis_y = pad + row_h * len(rows) + 10
    parts.append(f'<text x="{label_w}" y="{axis_y}" text-anchor="start">{_e(fmt(lo))}</text>')
    parts.append(f'<text x="{label_w + bar_w}" y="{axis_y}" text-anchor="end">{_e(fmt(hi))}</text>')
    parts.append("</svg>")
    caption = f"{metric} {arrow(group, metric)}: mean and 95% interval over test pairs"
    return f"<figure>{''.join(parts)}<figcaption>{_e(caption)}</figcaption></figure>"


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
    for n, g in enumerate(board.groups, 1):
        shown = [m for m in g.metrics if m in HEADLINE or m == g.primary]
        body.append(f'<section class="group" id="group-{n}"><h2>{n}. {_e(g.title)}</h2>')
        body.append('<dl class="card">')
        for k, v in protocol_card(g):
            body.append(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>")
        body.append("</dl>")
        body.append(_table(g, shown, n))
        body.append('<div class="charts">')
        body += [_chart(g, m) for m in shown]
        body.append("</div>")
        videos = [_video(r, page_dir) for r in g.rows if r.video]
        if videos:
            body.append("<h3>Sample videos (real | generated, with the audio)</h3>")
            body.append('<div class="videos">' + "".join(videos) + "</div>")
        body.append("</section>")
    body.append("<h2>Reported in papers (not measured here; never ranked)</h2>")
    if not board.reported:
        body.append(
            '<p class="note">None: experiments/leaderboard/reported.yaml lists only numbers '
            "that can be cited with their table, and none could be read from the papers yet.</p>"
        )
    else:
        names = sorted({k for r in board.reported for k in r["metrics"]})
        body.append('<table class="lb" id="table-reported"><thead><tr>')
        for h in ["method", "dataset", "protocol", *names, "source"]:
            body.append(f'<th class="label">{_e(h)}</th>')
        body.append("</tr></thead><tbody>")
        for r in board.reported:
            body.append('<tr class="reported">')
            for v in (r["method"], r["dataset"], r["protocol"]):
                body.append(f'<td class="label" data-sort="{_e(v)}">{_e(v)}</td>')
            for k in names:
                val = r["metrics"].get(k)
                body.append(f'<td data-sort="{_sort_value(val)}">{_e(fmt(val))}</td>')
            src = f"{r['citation']}, {r['table']} (reported)"
            body.append(f'<td class="label" data-sort="{_e(src)}">{_e(src)}</td></tr>')
        body.append("</tbody></table>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(board.title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + f"<script>{_JS}</script></body></html>\n"
    )


__all__ = ["EMBED_LIMIT", "to_html"]

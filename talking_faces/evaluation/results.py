"""Results JSON: the record ``talking-faces evaluate`` writes and the leaderboard reads.

generated clips -> metric suite -> **results JSON** (+ per-clip CSV) -> leaderboard

One file holds one scored method (a checkpoint or a reference baseline) on one dataset split under
one protocol. Everything needed to decide whether two numbers may be compared sits in the file:
the dataset (its ``meta.json`` sha256), the split, the sha256 of the evaluated pair list, and the
resolved protocol (metric variants, resolution, colour space, and the sha256 of the experts that
scored it). :func:`comparison_key` reduces those to one tuple; :func:`group_results` groups by
it and :func:`check_comparable` refuses to put two results side by side when the keys differ. No
code that reads results merges two files with different keys.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from talking_faces.errors import UserError
from talking_faces.utils.io import atomic_path, sha256_json, write_json_atomic

#: identifies the layout of a results file; bumped when a field changes meaning
RESULTS_FORMAT = "talking_faces.evaluation.results/1"


def _required() -> Any:
    """A field every results file carries (:data:`REQUIRED_FIELDS`)."""
    return field(metadata={"required": True})


def _optional(*types: type) -> Any:
    """A field newer than the format (older files lack it) that must be of ``types`` when
    present (:data:`OPTIONAL_FIELDS`); left out of the file when None and None is not allowed."""
    return field(default=None, metadata={"types": types})


@dataclass(kw_only=True)
class ResultsRecord:
    """The one schema of a results file: its top-level fields, in the order they are written
    (docs/architecture.md, "Results JSON"). Fields marked neither required nor optional are
    written by every evaluation but not checked on reading (the leaderboard reads them with
    defaults)."""

    format: str = field(default=RESULTS_FORMAT, metadata={"required": True})
    #: the method's name, or the baseline's
    method: str = _required()
    #: ``model``, ``baseline`` or ``generated`` (a folder of videos made elsewhere)
    kind: str = _required()
    #: the row's label (run name, drive and options; baseline and audio shift)
    label: str
    #: ``{"path", "sha256"}`` of the checkpoint; None for a baseline
    checkpoint: dict[str, str] | None = _required()
    #: ``{"name", "audio_shift"}``; None for a model
    baseline: dict[str, Any] | None
    #: a folder of videos made elsewhere (``--generated``): its path, the sha256 over the files
    #: scored, their formats, resizing and trimming (:mod:`talking_faces.evaluation.generated`)
    generated: dict[str, Any] | None = _optional(dict)
    #: how what was scored was stored (:func:`scored_media`): the generated frames (model
    #: tensors, prepared JPEG frames, or the codecs of a ``--generated`` folder), the real
    #: frames and the audio LSE scored
    media: dict[str, Any] | None = _optional(dict)
    #: where the dataset is and what it is (``sha256``: its identity; ``meta_sha256``)
    dataset: dict[str, Any] = _required()
    split: str = _required()
    #: ``{"sha256"`` (of the pairs scored), ``"file_sha256", "count", "evaluated"}``
    pairs: dict[str, Any] = _required()
    #: the resolved protocol (metric variants, experts' sha256) and its sha256
    protocol: dict[str, Any] = _required()
    protocol_sha256: str = _required()
    #: the experts that scored: ``{name: {"kind", "path", "sha256"}}``
    experts: dict[str, Any] = _required()
    metrics: dict[str, Any] = _required()
    higher_is_better: dict[str, bool | None] = _required()
    #: the per-clip CSV's file name (beside the results file)
    per_clip: str = _required()
    #: frames without landmarks, clips without LMD, pairs skipped (and which, why)
    failures: dict[str, Any] = _required()
    seed: int = _required()
    drive: str
    generation_options: dict[str, Any]
    method_metrics: dict[str, Any]
    #: the resolved config the checkpoint was trained with; None for baselines
    run_config: dict[str, Any] | None = _optional(dict, type(None))
    #: sample videos, paths relative to the results file
    videos: list[dict[str, Any]] | None = _optional(list)
    num_samples: int = _required()
    batch_size: int
    #: the audio features the method was trained on
    audio: dict[str, Any]
    package_version: str = _required()
    git_commit: str | None = _required()
    created: str = _required()
    #: seconds, frames, frames per second, device and process count of the evaluation
    timing: dict[str, Any]
    #: who asked for the results: ``{"sweep": {...}}`` for a sweep trial, see
    #: :data:`SWEEP_PROVENANCE_FIELDS`
    provenance: dict[str, Any] | None = _optional(dict)

    def to_dict(self) -> dict[str, Any]:
        """The record as written (an optional field that may not be None is left out when
        None)."""
        none = type(None)
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not None or none in f.metadata.get("types", (none,))
        }


#: top-level fields every results file carries (:class:`ResultsRecord`)
REQUIRED_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(ResultsRecord) if f.metadata.get("required")
)
#: fields a results file may carry (newer than the format; older files lack them) and their types
#: (:class:`ResultsRecord`): ``generated``, ``media``, ``run_config``, ``videos``,
#: ``provenance``
OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {
    f.name: f.metadata["types"] for f in fields(ResultsRecord) if "types" in f.metadata
}
#: what ``provenance["sweep"]`` holds: the sweep's name, file and file sha256, the trial's
#: folder name, configuration id (sha256 of its overrides), overrides and seed
SWEEP_PROVENANCE_FIELDS: tuple[str, ...] = (
    "name",
    "file",
    "sha256",
    "trial",
    "config_id",
    "overrides",
    "seed",
)


def scored_media(
    kind: str, meta: dict[str, Any], generated: dict[str, Any] | None
) -> dict[str, Any]:
    """The results' ``media``: how the frames and audio an evaluation scored were stored, from
    the results' ``kind``, the dataset's ``meta.json`` and a ``--generated`` folder's record.
    Re-encoding moves LSE and LMD (docs/metrics.md, "Codec robustness"), so results say it."""
    real = (
        f"{meta.get('frame_codec', 'jpeg')} quality {meta.get('jpeg_quality', '?')} at "
        f"{meta.get('size', '?')} px (the prepared shards)"
    )
    if kind == "model":
        frames = "the model's output frames, scored as float tensors (no codec)"
    elif kind == "baseline":
        frames = f"real frames: {real}"
    else:
        codecs = (generated or {}).get("codecs") or {}
        frames = "files: " + ", ".join(f"{c} x{n}" for c, n in codecs.items())
    audio = (
        f"{meta.get('sample_rate', '?')} Hz mono waveform in the prepared shards (decoded from "
        "the raw clips' audio once by prepare; PCM from then on)"
    )
    return {"generated_frames": frames, "real_frames": real, "audio": audio}


def protocol_sha256(protocol: dict[str, Any]) -> str:
    """sha256 of a resolved protocol (canonical JSON); equal hashes mean the same measurement."""
    return sha256_json(protocol)


def validate_provenance(provenance: Any, source: str = "provenance") -> None:
    """Raise :class:`UserError` unless ``provenance`` is a JSON object whose ``sweep`` entry, if
    any, has every field of :data:`SWEEP_PROVENANCE_FIELDS`."""
    if not isinstance(provenance, dict):
        raise UserError(f"{source}: provenance must be a JSON object")
    sweep = provenance.get("sweep")
    if sweep is None:
        return
    missing = [k for k in SWEEP_PROVENANCE_FIELDS if not isinstance(sweep, dict) or k not in sweep]
    if missing:
        raise UserError(f"{source}: provenance.sweep lacks {', '.join(missing)}")
    if not isinstance(sweep["overrides"], dict) or not isinstance(sweep["seed"], int):
        raise UserError(f"{source}: provenance.sweep needs overrides (object) and seed (integer)")


def validate_results(results: dict[str, Any], source: str = "results") -> None:
    """Raise :class:`UserError` if ``results`` lacks a required field, has an unknown format,
    or has an optional field (:data:`OPTIONAL_FIELDS`) of the wrong type."""
    if results.get("format") != RESULTS_FORMAT:
        raise UserError(
            f"{source} is not a talking_faces results file (format {results.get('format')!r}, "
            f"expected {RESULTS_FORMAT!r}); write it with `talking-faces evaluate`"
        )
    missing = [k for k in REQUIRED_FIELDS if k not in results]
    if missing:
        raise UserError(
            f"{source} lacks fields {', '.join(missing)}; re-run `talking-faces evaluate`"
        )
    for key, types in OPTIONAL_FIELDS.items():
        if key in results and not isinstance(results[key], types):
            raise UserError(
                f"{source}: field {key} must be {' or '.join(t.__name__ for t in types)}; "
                "re-run `talking-faces evaluate`"
            )
    if "provenance" in results:
        validate_provenance(results["provenance"], source)
    if protocol_sha256(results["protocol"]) != results["protocol_sha256"]:
        raise UserError(
            f"{source}: its protocol does not match its protocol_sha256 (edited by hand?); "
            "re-run `talking-faces evaluate`"
        )


def write_results(path: str | os.PathLike[str], results: dict[str, Any]) -> Path:
    """Validate and write ``results`` to ``path`` atomically; return the path."""
    validate_results(results, str(path))
    write_json_atomic(path, results)
    return Path(path)


def load_results(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[dict]:
    """Read one or more results files; each dict gains ``"_path"`` (where it was read from)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise UserError(
                f"results file {p} does not exist; write it with `talking-faces evaluate`"
            )
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(
                f"results file {p} is not valid JSON ({exc.msg}, line {exc.lineno})"
            ) from None
        if not isinstance(data, dict):
            raise UserError(f"results file {p} does not hold a JSON object")
        validate_results(data, str(p))
        data["_path"] = str(p)
        out.append(data)
    return out


def write_per_clip_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """The per-clip CSV: one row per scored pair (columns: the union of the rows' keys,
    first-seen order)."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def per_clip_path(results: dict[str, Any]) -> Path:
    """The per-clip CSV of results read by :func:`load_results` (beside the results file)."""
    return Path(results.get("_path", ".")).with_name(results["per_clip"])


def comparison_key(results: dict[str, Any]) -> tuple[str, str, str, str]:
    """``(dataset identity sha256, split, protocol sha256, pairs sha256)``: results compare only
    when these four agree."""
    return (
        # the dataset's identity (older files: the sha256 of its whole meta.json)
        str(results["dataset"].get("sha256") or results["dataset"]["meta_sha256"]),
        str(results["split"]),
        str(results["protocol_sha256"]),
        str(results["pairs"]["sha256"]),
    )


def comparable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two results were measured on the same pairs under the same protocol."""
    return comparison_key(a) == comparison_key(b)


def _describe_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    ka, kb = comparison_key(a), comparison_key(b)
    names = ("dataset", "split", "protocol", "pair list")
    diff = [n for n, x, y in zip(names, ka, kb, strict=True) if x != y]
    if "protocol" in diff:
        pa, pb = a["protocol"], b["protocol"]
        keys = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
        diff[diff.index("protocol")] = f"protocol ({', '.join(keys)})"
    return ", ".join(diff)


def check_comparable(results: Sequence[dict[str, Any]]) -> None:
    """Raise :class:`UserError` unless every result shares the first one's comparison key."""
    if not results:
        return
    first = results[0]
    for other in results[1:]:
        if not comparable(first, other):
            what = _describe_difference(first, other)
            raise UserError(
                f"results {first.get('_path', first['method'])} and "
                f"{other.get('_path', other['method'])} differ in {what}; "
                "they cannot be compared: evaluate both under the same protocol and pairs"
            )


def group_results(
    results: Iterable[dict[str, Any]],
) -> dict[tuple[str, str, str, str], list[dict[str, Any]]]:
    """Group results by :func:`comparison_key`, keeping input order within a group.

    Two results with different protocols (or pairs, split, dataset) never share a group; callers
    render one table per group.
    """
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(comparison_key(r), []).append(r)
    return groups


def metric_table(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{"method", **metrics}`` for results that are comparable (refuses otherwise)."""
    check_comparable(results)
    return [{"method": r["method"], **r["metrics"]} for r in results]

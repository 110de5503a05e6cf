"""``prepare`` as a whole: list clips, process them in parallel and resumably, write the dataset.

raw corpus -> readers.read_layout -> **pipeline** (pool of workers running clip.process_clip)
-> writer (work files, then shards + manifest.jsonl + pairs.json + meta.json) -> prepared dataset

Order of work, chosen so that an interruption at any point loses at most the clips in flight:

1. List the source (``readers.read_layout``), sort by clip id, apply ``limit``.
2. Check ``OUT``: a complete dataset (``meta.json``) with the same settings and clips is left as it
   is; an unfinished one (``.work/config.json``) with the same settings is resumed; a folder made
   with other settings is refused with one line (use a new folder or ``--overwrite``). The
   settings hash covers everything that shapes the stored data (layout, source, crop size,
   template and feature parameters, landmark backend and weights, JPEG quality, split protocol,
   seed) but not ``workers``, ``device`` or ``limit``.
3. Process every clip without a result in ``OUT/.work``: each worker runs ``process_clip``,
   encodes the frames to JPEG and writes ``.work/clips/<key>.npz`` atomically; skipped clips are
   appended to ``.work/status.jsonl`` by the main process. A rerun skips clips with a result (a
   skipped clip counts as finished; use ``--overwrite`` to retry after fixing a source file).
4. When every clip has a result: assign splits (:mod:`.splits`), write the shards of each split
   into a temporary folder, write ``manifest.jsonl`` and ``pairs.json``, rename the shards into
   place, write ``meta.json`` last, and delete ``.work``.

``OUT`` may be ``s3://bucket/prefix`` (:func:`prepare_to_storage`): steps 2-4 then run in a local
staging folder, which is uploaded by :func:`talking_faces.data.storage.upload_dataset`
(``meta.json`` last, so the prefix reads as a dataset only once complete); a rerun resumes either
the processing (in the staging folder) or the upload (objects already stored are not sent again).

Unexpected exceptions inside ``process_clip`` (a decoder bug on one odd file) are recorded as
skipped with reason ``error`` and the exception text, so one clip never stops a long run; a
:class:`UserError` (missing weights, ...) stops the run.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from talking_faces import __version__
from talking_faces.data.clips import ClipSkipped, RawClip
from talking_faces.data.prepare import writer as W
from talking_faces.data.prepare.splits import SPLITS, SplitItem, assign_splits, resolve_protocol
from talking_faces.errors import UserError
from talking_faces.names import FPS, MANIFEST_FILE, META_FILE, PAIRS_FILE, SAMPLE_RATE, SHARDS_DIR
from talking_faces.utils.io import remove_stale_temporaries, sha256_file, sha256_json
from talking_faces.utils.progress import progress

WORK_DIR = ".work"


@dataclass(frozen=True)
class PrepareOptions:
    """Arguments of ``talking-faces prepare`` (see :func:`prepare`).

    ``out`` is a folder or an ``s3://bucket/prefix`` URL; for a URL the dataset is prepared in
    ``staging`` (default: a folder under :func:`talking_faces.data.storage.cache_root`, deleted
    after the upload; a given one is kept) and uploaded from there.
    """

    source: Path
    out: Path | str
    layout: str
    landmarks: str = "sidecar"
    device: str = "cpu"
    #: the dlib backend's face detector (cnn, hog; None: cnn)
    face_detector: str | None = None
    size: int = 128
    workers: int = 1
    protocol: str | None = None
    seed: int = 0
    jpeg_quality: int = 90
    limit: int | None = None
    overwrite: bool = False
    staging: Path | None = None


@dataclass
class PrepareSummary:
    """What a ``prepare`` run did. ``skipped`` holds ``(clip_id, reason, detail)``."""

    out: Path | str
    total: int
    ok: int
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    processed_now: int = 0
    processing_s: float = 0.0
    elapsed_s: float = 0.0
    splits: dict[str, int] = field(default_factory=dict)
    already_complete: bool = False
    #: for an object-storage ``out``: what the upload did (``UploadSummary.format()``)
    upload: str | None = None

    @property
    def by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r for _, r, _ in self.skipped).items()))

    @property
    def clips_per_s(self) -> float:
        return self.processed_now / self.processing_s if self.processing_s > 0 else 0.0

    def format(self, top: int = 20) -> str:
        """Human-readable summary: counts, splits, and the first ``top`` skipped clips."""
        reasons = ", ".join(f"{r} {n}" for r, n in self.by_reason.items())
        lines = []
        if self.already_complete:
            lines.append(f"{self.out} is already complete; nothing to do")
        lines.append(
            f"clips: {self.total} | ok {self.ok} | skipped {len(self.skipped)}"
            + (f" ({reasons})" if reasons else "")
        )
        if self.splits:
            lines.append(
                "splits (ok clips): " + ", ".join(f"{k} {v}" for k, v in self.splits.items())
            )
        if self.processed_now:
            lines.append(
                f"processed {self.processed_now} clips in {self.processing_s:.1f} s "
                f"({self.clips_per_s:.2f} clips/s); total {self.elapsed_s:.1f} s"
            )
        if self.upload:
            lines.append(self.upload)
        if self.skipped:
            lines.append("skipped clips:")
            for cid, reason, detail in self.skipped[:top]:
                lines.append(f"  {cid}: {reason}" + (f" ({detail})" if detail else ""))
            if len(self.skipped) > top:
                lines.append(f"  ... and {len(self.skipped) - top} more (see {MANIFEST_FILE})")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _init_worker(cfg: Any, work_dir: str, detector: Any = None) -> None:
    """Per-process state: the clip config, one landmark backend, the work folder.

    Pool workers use one torch thread each (the pool is the parallelism).
    """
    from talking_faces.data.prepare.landmarks import create_backend

    if detector is None:
        import torch

        torch.set_num_threads(1)
        detector = create_backend(cfg.landmarks, cfg.device, cfg.face_detector)
    _WORKER["cfg"] = cfg
    _WORKER["work"] = W.WorkDir(Path(work_dir))
    _WORKER["detector"] = detector


def _source_sha(raw: RawClip) -> str | None:
    try:
        return sha256_file(raw.video)
    except OSError:
        return None


def _run_one(raw: RawClip) -> tuple[str, str, str, str, str | None]:
    """Process one clip in a worker: ``("ok" | "skipped", clip_id, reason, detail, sha256)``."""
    from talking_faces.data.prepare.clip import process_clip

    cfg = _WORKER["cfg"]
    work: W.WorkDir = _WORKER["work"]
    try:
        clip = process_clip(raw, cfg, _WORKER["detector"])
    except ClipSkipped as exc:
        return ("skipped", raw.clip_id, exc.reason, exc.detail, _source_sha(raw))
    except UserError:
        raise
    except Exception as exc:  # one odd file must not stop a long run; it is listed instead
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return ("skipped", raw.clip_id, "error", detail, _source_sha(raw))
    W.save_clip_file(work.clip_path(raw.clip_id), clip, cfg.jpeg_quality)
    return ("ok", raw.clip_id, "", "", clip.source_sha256)


# ---------------------------------------------------------------------------- helpers


def _guess_item(layout: str, clip_id: str) -> SplitItem:
    """Speaker and split hint of a clip the reader rejected before making a RawClip."""
    parts = clip_id.split("/")
    if layout == "lrw":  # LRW names no speakers: every clip is its own identity (as readers.py)
        hint = parts[1] if len(parts) >= 3 and parts[1] in SPLITS else None
        return SplitItem(clip_id, clip_id, hint)
    return SplitItem(clip_id, parts[0] if len(parts) > 1 else "unknown", None)


def _config(opts: PrepareOptions, protocol: str, clip_cfg: Any, backend: Any) -> dict[str, Any]:
    from talking_faces.data.prepare.clip import feature_params

    return {
        "format_version": W.FORMAT_VERSION,
        "layout": opts.layout,
        "source": str(Path(opts.source).resolve()),
        "size": opts.size,
        "jpeg_quality": opts.jpeg_quality,
        "protocol": protocol,
        "seed": opts.seed,
        "landmarks": {
            "backend": backend.name,
            "weights_sha256": getattr(backend, "weights_sha256", None),
            # only dlib has a choice of detector (absent otherwise: older records stay equal)
            **({"detector": backend.detector} if backend.name == "dlib" else {}),
        },
        "features": feature_params(clip_cfg),
    }


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def _config_diff(old: dict[str, Any], new: dict[str, Any], show: int = 3) -> str:
    """``key old -> new`` for the first ``show`` differing settings (dotted keys)."""
    a, b = _flatten(old), _flatten(new)
    changed = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
    keys = sorted(changed, key=lambda k: (k.count("."), k))  # top-level settings first

    def short(v: Any) -> str:
        text = repr(v)
        return text if len(text) <= 40 else text[:37] + "..."

    diffs = [f"{k} {short(a.get(k))} -> {short(b.get(k))}" for k in keys[:show]]
    more = f"; {len(keys) - show} more" if len(keys) > show else ""
    return "; ".join(diffs) + more


def _is_ours(out: Path) -> bool:
    return (out / META_FILE).exists() or (out / WORK_DIR).exists()


def _clear(out: Path) -> None:
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _summary_from_manifest(
    out: Path | str, meta: dict[str, Any], manifest: str | None = None
) -> PrepareSummary:
    text = manifest if manifest is not None else (Path(out) / MANIFEST_FILE).read_text()
    rows = W.read_manifest_text(text)
    skipped = [
        (r["clip_id"], r["reason"], r.get("detail") or "") for r in rows if r["status"] != "ok"
    ]
    return PrepareSummary(
        out=out,
        total=len(rows),
        ok=len(rows) - len(skipped),
        skipped=skipped,
        splits=dict(meta.get("splits", {})),
        already_complete=True,
    )


# ---------------------------------------------------------------------------- main entry


@dataclass
class _Plan:
    """What a ``prepare`` run will write, known before any clip is processed."""

    protocol: str
    clip_cfg: Any
    backend: Any
    config: dict[str, Any]
    items: list[tuple[str, RawClip | tuple[str, str]]]
    ids: list[str]


def prepare(opts: PrepareOptions) -> PrepareSummary:
    """Turn the raw corpus at ``opts.source`` into a prepared dataset at ``opts.out``.

    Resumable (rerun the same command after an interruption) and parallel (``opts.workers``
    processes). ``opts.out`` may be an ``s3://`` URL (see :class:`PrepareOptions` and
    :func:`prepare_to_storage`). Returns the summary; raises :class:`UserError` on bad arguments,
    a source with no clips, or an ``OUT`` made with other settings.
    """
    from talking_faces.data import storage

    t0 = time.perf_counter()
    if storage.is_remote(opts.out):
        return prepare_to_storage(opts, _plan(opts), t0)
    return _prepare_local(opts, _plan(opts), t0)


def _plan(opts: PrepareOptions) -> _Plan:
    """Check the arguments, list the source, fix the settings record (step 1 of the module doc)."""
    from talking_faces.data import storage
    from talking_faces.data.prepare.clip import ClipConfig
    from talking_faces.data.prepare.landmarks import create_backend
    from talking_faces.data.sources.readers import LAYOUTS, read_layout

    source = Path(opts.source)
    if opts.layout not in LAYOUTS:
        raise UserError(f"unknown layout {opts.layout!r}; choose one of {', '.join(LAYOUTS)}")
    protocol = resolve_protocol(opts.layout, opts.protocol)
    if not source.is_dir():
        raise UserError(f"source folder {source} does not exist; give the raw corpus folder")
    if opts.workers < 1:
        raise UserError(f"--workers must be at least 1, got {opts.workers}")
    if not 1 <= opts.jpeg_quality <= 100:
        raise UserError(f"--jpeg-quality must be in 1..100, got {opts.jpeg_quality}")
    if opts.limit is not None and opts.limit < 1:
        raise UserError(f"--limit must be at least 1, got {opts.limit}")
    if not storage.is_remote(opts.out):
        out = Path(opts.out)
        if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
            raise UserError(f"output folder {out} is inside the source {source}; choose another")

    clip_cfg = ClipConfig(
        size=opts.size,
        landmarks=opts.landmarks,
        device=opts.device,
        face_detector=opts.face_detector,
        jpeg_quality=opts.jpeg_quality,
    )
    # MissingWeightsError before any work
    backend = create_backend(opts.landmarks, opts.device, opts.face_detector)
    config = _config(opts, protocol, clip_cfg, backend)

    clips, pre_skipped = read_layout(source, opts.layout)
    items: list[tuple[str, RawClip | tuple[str, str]]] = [(c.clip_id, c) for c in clips]
    items += [(cid, (reason, detail)) for cid, reason, detail in pre_skipped]
    items.sort(key=lambda kv: kv[0])
    ids = [cid for cid, _ in items]
    if len(set(ids)) != len(ids):
        dup = next(c for c, n in Counter(ids).items() if n > 1)
        raise UserError(f"the source lists clip {dup} twice; clip ids must be unique")
    if opts.limit is not None:
        items = items[: opts.limit]
        ids = ids[: opts.limit]
    # a protocol that cannot fit the corpus fails now, not after hours of processing
    assign_splits(
        [
            SplitItem(cid, raw.speaker, raw.split_hint)
            if isinstance(raw, RawClip)
            else _guess_item(opts.layout, cid)
            for cid, raw in items
        ],
        opts.layout,
        protocol,
        opts.seed,
    )
    return _Plan(protocol, clip_cfg, backend, config, items, ids)


def _prepare_local(opts: PrepareOptions, plan: _Plan, t0: float) -> PrepareSummary:
    """Steps 2-4 of the module doc into the folder ``opts.out``."""
    out = Path(opts.out)
    protocol, clip_cfg, backend = plan.protocol, plan.clip_cfg, plan.backend
    config, items, ids = plan.config, plan.items, plan.ids
    work = W.WorkDir(out / WORK_DIR)
    meta_path = out / META_FILE
    if out.exists() and any(out.iterdir()):
        if opts.overwrite:
            if not _is_ours(out):
                raise UserError(
                    f"{out} is not a prepared dataset (no {META_FILE} or {WORK_DIR}); "
                    "refusing to delete it; choose an empty or new folder"
                )
            _clear(out)
        elif meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("config") != config:
                diff = _config_diff(meta.get("config", {}), config)
                raise UserError(
                    f"{out} was prepared with other settings ({diff}); "
                    "use a new output folder or --overwrite"
                )
            listed = [r["clip_id"] for r in W.read_manifest_text((out / MANIFEST_FILE).read_text())]
            if listed != ids:
                raise UserError(
                    f"{out} is a complete dataset of {len(listed)} clips but the source now lists "
                    f"{len(ids)}; use a new output folder or --overwrite"
                )
            shutil.rmtree(out / WORK_DIR, ignore_errors=True)
            summary = _summary_from_manifest(out, meta)
            summary.elapsed_s = time.perf_counter() - t0
            return summary
        else:
            old = work.read_config()
            if old is None:
                raise UserError(
                    f"{out} exists and is not a prepared dataset; choose an empty or new folder"
                )
            if old != config:
                raise UserError(
                    f"{out} holds an unfinished prepare with other settings "
                    f"({_config_diff(old, config)}); use a new output folder or --overwrite"
                )
            remove_stale_temporaries(out)
    work.create(config)

    # ---- per-clip work (resumable)
    done_skipped = work.skipped()
    todo = [
        raw
        for _, raw in items
        if isinstance(raw, RawClip)
        and raw.clip_id not in done_skipped
        and not work.clip_path(raw.clip_id).exists()
    ]
    t_proc = time.perf_counter()
    _process_all(todo, clip_cfg, work, opts.workers, backend)
    processing_s = time.perf_counter() - t_proc

    # ---- finalize
    summary = write_dataset(opts, protocol, config, items, work)
    summary.processed_now = len(todo)
    summary.processing_s = processing_s
    summary.elapsed_s = time.perf_counter() - t0
    return summary


def default_staging(url: str) -> Path:
    """Where ``prepare SOURCE s3://bucket/prefix`` prepares before uploading, unless told:
    ``cache_root()/staging/bucket/prefix`` (the same folder on a rerun, so it resumes)."""
    from talking_faces.data import storage

    bucket, prefix = storage.split_url(url)
    return storage.cache_root() / "staging" / bucket / Path(*[p for p in prefix.split("/") if p])


def prepare_to_storage(opts: PrepareOptions, plan: _Plan, t0: float) -> PrepareSummary:
    """Prepare into a local staging folder, then upload it to the URL ``opts.out``.

    A dataset already complete at the URL with these settings and clips is not prepared again
    (a complete staging folder given with ``opts.staging`` is still synced to it, which is how
    experts trained on the local copy reach the bucket). Otherwise the staging folder is
    prepared (resuming an earlier run there) and uploaded by
    :func:`talking_faces.data.storage.upload_dataset`, ``meta.json`` last; a staging folder this
    function chose is deleted after the upload, one given is kept.
    """
    from talking_faces.data import storage

    url = str(opts.out).rstrip("/")
    storage.split_url(url)  # s3:// only
    given = opts.staging is not None
    staging = Path(opts.staging) if opts.staging is not None else default_staging(url)
    source = Path(opts.source).resolve()
    if staging.resolve() == source or source in staging.resolve().parents:
        raise UserError(f"staging folder {staging} is inside the source {source}; choose another")
    try:
        meta_text: str | None = storage.read_text(storage.join(url, META_FILE))
    except FileNotFoundError:
        meta_text = None
    if meta_text is not None and not opts.overwrite:
        meta = json.loads(meta_text)
        if meta.get("config") != plan.config:
            diff = _config_diff(meta.get("config", {}), plan.config)
            raise UserError(
                f"{url} was prepared with other settings ({diff}); use another prefix or "
                "--overwrite"
            )
        manifest = storage.read_text(storage.join(url, MANIFEST_FILE))
        listed = [r["clip_id"] for r in W.read_manifest_text(manifest)]
        if listed != plan.ids:
            raise UserError(
                f"{url} is a complete dataset of {len(listed)} clips but the source now lists "
                f"{len(plan.ids)}; use another prefix or --overwrite"
            )
        summary = _summary_from_manifest(url, meta, manifest)
        if (staging / META_FILE).is_file():
            upload = storage.upload_dataset(staging, url)
            summary.upload = upload.format()
            summary.already_complete = upload.uploaded == 0
        summary.elapsed_s = time.perf_counter() - t0
        return summary

    summary = _prepare_local(replace(opts, out=staging), plan, t0)
    upload = storage.upload_dataset(staging, url, overwrite=opts.overwrite)
    summary.out = url
    summary.upload = upload.format()
    summary.already_complete = summary.already_complete and upload.uploaded == 0
    if not given:
        shutil.rmtree(staging, ignore_errors=True)
    summary.elapsed_s = time.perf_counter() - t0
    return summary


def _process_all(
    todo: list[RawClip], cfg: Any, work: W.WorkDir, workers: int, backend: Any
) -> None:
    if not todo:
        return
    bar = progress(total=len(todo), desc="prepare", unit="clip")
    try:
        if workers == 1 or len(todo) == 1:
            _init_worker(cfg, str(work.root), detector=backend)
            results = map(_run_one, todo)
            for res in results:
                _record(res, work, bar)
            return
        # Not fork: a child forked from a process that has decoded a video with PyAV (FFmpeg's
        # frame threads) can hang in its first decode (seen with av 18.1: every worker waiting
        # on a futex). forkserver's children are forked from a clean server process that has
        # imported this module (and torch, PyAV, OpenCV) once and decoded nothing, so a pool
        # costs no import per worker; the server lives as long as this process. CUDA needs a
        # fresh interpreter per worker.
        ctx: mp.context.BaseContext
        if str(cfg.device).startswith("cuda"):
            ctx = mp.get_context("spawn")
        else:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
        with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg, str(work.root))) as pool:
            for res in pool.imap_unordered(_run_one, todo, chunksize=1):
                _record(res, work, bar)
    finally:
        bar.close()
        _WORKER.clear()


def _record(res: tuple[str, str, str, str, str | None], work: W.WorkDir, bar: Any) -> None:
    status, clip_id, reason, detail, sha = res
    if status == "skipped":
        work.record_skip(clip_id, reason, detail, sha)
    bar.update(1)


def write_dataset(
    opts: PrepareOptions,
    protocol: str,
    config: dict[str, Any],
    items: list[tuple[str, RawClip | tuple[str, str]]],
    work: W.WorkDir,
) -> PrepareSummary:
    """Step 4: from a work folder where every listed clip has a result, write the dataset.

    ``items`` are ``(clip_id, RawClip)`` for clips given to ``process_clip`` and
    ``(clip_id, (reason, detail))`` for clips the reader rejected, sorted by clip id;
    ``config`` is the settings record (its ``features`` go to the top level of meta.json).
    Deletes ``work`` when done.
    """
    from talking_faces.utils.io import write_json_atomic

    out = Path(opts.out)
    split_items, records = _clip_records(opts.layout, items, work)
    splits = assign_splits(split_items, opts.layout, protocol, opts.seed)
    word_list, speaker_list = _vocabularies(opts.layout, items, records, split_items)
    manifest, split_index = _manifest_rows(records, splits)
    pairs = W.make_pairs([m for m in manifest if m["split"] == "test"], opts.seed)
    _write_shards_and_lists(out, records, manifest, split_index, speaker_list, word_list, pairs)
    meta = _dataset_meta(
        opts, protocol, config, manifest, split_index, speaker_list, word_list, pairs
    )
    write_json_atomic(out / META_FILE, meta)
    shutil.rmtree(work.root, ignore_errors=True)
    skipped = _skipped(manifest)
    return PrepareSummary(
        out=out,
        total=len(manifest),
        ok=len(manifest) - len(skipped),
        skipped=skipped,
        splits={s: split_index[s] for s in SPLITS},
    )


def _clip_records(
    layout: str, items: list[tuple[str, RawClip | tuple[str, str]]], work: W.WorkDir
) -> tuple[list[SplitItem], list[dict[str, Any]]]:
    """``(split items, records)``, one each per listed clip in clip_id order: an ok record
    holds the clip's work file (``path``) and its ``info``, a skipped one what the manifest
    row needs."""
    skipped_rows = work.skipped()
    split_items: list[SplitItem] = []
    records: list[dict[str, Any]] = []
    for cid, raw in items:
        if isinstance(raw, RawClip):
            split_items.append(SplitItem(cid, raw.speaker, raw.split_hint))
            path = work.clip_path(cid)
            if path.exists():
                info = W.read_clip_info(path)
                records.append({"clip_id": cid, "status": "ok", "info": info, "path": path})
            else:
                row = skipped_rows[cid]
                records.append(
                    {
                        "clip_id": cid,
                        "status": "skipped",
                        "speaker": raw.speaker,
                        "word": raw.word,
                        "reason": row["reason"],
                        "detail": row.get("detail") or "",
                        "source_sha256": row.get("source_sha256"),
                    }
                )
        else:
            guess = _guess_item(layout, cid)
            split_items.append(guess)
            reason, detail = raw
            records.append(
                {
                    "clip_id": cid,
                    "status": "skipped",
                    "speaker": guess.speaker,
                    "word": None,
                    "reason": reason,
                    "detail": detail,
                    "source_sha256": None,
                }
            )
    return split_items, records


def _vocabularies(
    layout: str,
    items: list[tuple[str, RawClip | tuple[str, str]]],
    records: list[dict[str, Any]],
    split_items: list[SplitItem],
) -> tuple[list[str], list[str]]:
    """``(words, speakers)``, each sorted: GRID's fixed grammar (stable indices across GRID
    subsets) plus every word seen; every speaker that is not its own clip id."""
    words: set[str] = set()
    if layout == "grid":
        from talking_faces.data.sources.grid import VOCABULARY

        words.update(VOCABULARY)
    for _, raw in items:
        if isinstance(raw, RawClip) and raw.word:
            words.add(raw.word)
    ok_records = [r for r in records if r["status"] == "ok"]
    for r in ok_records:
        if r["info"].get("word"):
            words.add(r["info"]["word"])
    for r in ok_records:
        words.update(W.read_clip_words(r["path"]))
    speaker_of = {it.clip_id: it.speaker for it in split_items}
    # A speaker equal to its clip id (LRW) is no speaker: index -1, not listed in meta.
    speaker_list = sorted({s for cid, s in speaker_of.items() if s != cid})
    return sorted(words), speaker_list


def _manifest_rows(
    records: list[dict[str, Any]], splits: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """``(manifest rows, ok clips per split)``: an ok clip's ``index`` is its position among
    the ok clips of its split, in clip_id order."""
    manifest: list[dict[str, Any]] = []
    split_index = dict.fromkeys(SPLITS, 0)
    for r in records:
        cid = r["clip_id"]
        split = splits[cid]
        if r["status"] == "ok":
            info = r["info"]
            row = {
                "clip_id": cid,
                "speaker": info["speaker"],
                "split": split,
                "word": info.get("word"),
                "frames": int(info["num_frames"]),
                "frames_with_face": info.get("frames_with_face"),
                "status": "ok",
                "reason": None,
                "detail": None,
                "source_sha256": info.get("source_sha256"),
                "index": split_index[split],
            }
            split_index[split] += 1
        else:
            row = {
                "clip_id": cid,
                "speaker": r["speaker"],
                "split": split,
                "word": r["word"],
                "frames": 0,
                "status": "skipped",
                "reason": r["reason"],
                "detail": r["detail"],
                "source_sha256": r["source_sha256"],
                "index": None,
            }
        manifest.append(row)
    return manifest, split_index


def _write_shards_and_lists(
    out: Path,
    records: list[dict[str, Any]],
    manifest: list[dict[str, Any]],
    split_index: dict[str, int],
    speaker_list: list[str],
    word_list: list[str],
    pairs: dict[str, Any],
) -> None:
    """The shards of every split (renamed into place together), the manifest and the pairs."""
    from talking_faces.utils.io import atomic_dir, write_json_atomic

    word_index = {w: i for i, w in enumerate(word_list)}
    speaker_index = {s: i for i, s in enumerate(speaker_list)}
    shards = out / SHARDS_DIR
    with atomic_dir(shards) as tmp:
        for split in SPLITS:
            paths = [
                r["path"]
                for r, m in zip(records, manifest, strict=True)
                if m["status"] == "ok" and m["split"] == split
            ]
            n = W.write_shards(
                tmp / split,
                (
                    W.shard_sample(W.load_clip_file(p), i, speaker_index, word_index)
                    for i, p in enumerate(paths)
                ),
            )
            assert n == split_index[split]
        W.write_manifest(out / MANIFEST_FILE, manifest)
        write_json_atomic(out / PAIRS_FILE, pairs)

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(shards, 0o777 & ~umask)  # mkdtemp made it private; a dataset is shared


def _skipped(manifest: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """``(clip_id, reason, detail)`` of every skipped clip, in manifest order."""
    return [(m["clip_id"], m["reason"], m["detail"] or "") for m in manifest if m["status"] != "ok"]


def _dataset_meta(
    opts: PrepareOptions,
    protocol: str,
    config: dict[str, Any],
    manifest: list[dict[str, Any]],
    split_index: dict[str, int],
    speaker_list: list[str],
    word_list: list[str],
    pairs: dict[str, Any],
) -> dict[str, Any]:
    """The contents of ``meta.json`` (its keys: docs/architecture.md)."""
    skipped = _skipped(manifest)
    counts = {
        "ok": len(manifest) - len(skipped),
        "skipped": len(skipped),
        "by_reason": dict(sorted(Counter(r for _, r, _ in skipped).items())),
    }
    return {
        **config["features"],
        "version": __version__,
        "format_version": W.FORMAT_VERSION,
        "layout": opts.layout,
        "source": config["source"],
        "size": opts.size,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "landmarks": {**config["features"].get("landmarks", {}), **config["landmarks"]},
        "frame_codec": "jpeg",
        "jpeg_quality": opts.jpeg_quality,
        "shard_format": W.SHARD_FORMAT,
        "shards": {s: f"{SHARDS_DIR}/{s}" for s in SPLITS if split_index[s] > 0},
        "protocol": protocol,
        "seed": opts.seed,
        "speakers": speaker_list,
        "words": word_list,
        "num_clips": len(manifest),
        "counts": counts,
        "splits": {s: split_index[s] for s in SPLITS},
        "pairs_sha256": pairs["sha256"],
        "config": config,
        # Of the settings alone: ``source`` is where the raw corpus lay on the machine that
        # prepared it, and the dataset's identity (which keeps this hash) must not depend on it.
        "config_sha256": sha256_json({k: v for k, v in config.items() if k != "source"}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

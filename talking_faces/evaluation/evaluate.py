"""Scoring a checkpoint or a reference baseline on a prepared dataset's fixed test pairs.

prepared dataset (pairs.json) -> TestPairDataset -> model.generate() or a baseline ->
MetricSuite (one protocol, with the dataset's experts) -> **results JSON + per-clip CSV**
-> leaderboard

The stages, one module each under ``talking_faces/evaluation/``:

- :mod:`~talking_faces.evaluation.request`: the :class:`EvaluationRequest`, its checks, the
  checkpoint's method loaded;
- :mod:`~talking_faces.evaluation.protocols`: the protocol file (``experiments/protocols/``
  or a path);
- :mod:`~talking_faces.evaluation.scorers`: the networks it scores with and the metric suite;
- :mod:`~talking_faces.evaluation.pairs`: the test pairs and their batches;
- :mod:`~talking_faces.evaluation.baselines`: the reference rows' clips;
- :mod:`~talking_faces.evaluation.generated`: a folder of videos made elsewhere (``--generated``),
  scored in place of a method;
- :mod:`~talking_faces.evaluation.loop`: one process's batches scored, every process's gathered;
- :mod:`~talking_faces.evaluation.distributed`: the loop in N processes (``--devices N``);
- :mod:`~talking_faces.evaluation.results`: the results record's schema, written here.

A protocol is a YAML file in ``experiments/protocols/`` (or any path): the fields of
:class:`talking_faces.metrics.Protocol` (resolution, colour space, SSIM window, LMD variant, LSE
mode/crop/channel order, vshift, CPBD) plus what scores:

- ``syncnet``: ``expert`` (the dataset's SyncNet expert, ``PREP/experts/syncnet.ckpt`` or
  ``--syncnet PATH``; the LSE mode, crop box and channel order are those it was trained with, and a
  protocol that names other ones is refused), ``public`` (``syncnet_v2.model`` at 224 px, from the
  weights cache or ``--syncnet-public PATH``) or ``none``;
- ``landmarks``: ``expert`` (``PREP/experts/landmarks.ckpt`` or ``--landmarks-model PATH``) or
  ``none``;
- ``lmd_reference``: ``expert`` (the real frames' landmarks come from the same expert, so its own
  error cancels: symmetric, the default) or ``dataset`` (the landmarks stored in the dataset);
- ``lpips``: whether LPIPS is scored (needs torchvision's AlexNet weights).

The results file records the resolved protocol, including the sha256 of each expert, so two
results compare only when the same networks scored them (see
:mod:`talking_faces.evaluation.results`). Generation draws with
``torch.Generator().manual_seed(seed + batch index)``, batches holding pairs of one length in pair
order. With ``devices`` > 1 (:mod:`talking_faces.evaluation.distributed`) batch i is generated and
scored by process i mod N, the metric states are reduced across the processes and the per-pair rows
gathered in pair order, so the results equal a one-process run's, the metrics to the last bit
(their sums are exact, :mod:`talking_faces.metrics.exact`).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from talking_faces import __version__
from talking_faces.evaluation.distributed import score_on_devices
from talking_faces.evaluation.loop import Scored, process_rank, score
from talking_faces.evaluation.request import EvaluationRequest, check_request, label
from talking_faces.evaluation.results import (
    ResultsRecord,
    protocol_sha256,
    scored_media,
    write_per_clip_csv,
    write_results,
)
from talking_faces.utils.allocator import tune_allocator
from talking_faces.utils.provenance import git_info


def evaluate(req: EvaluationRequest) -> dict[str, Any]:
    """Score ``req.ckpt``, ``req.baseline`` or ``req.generated`` and write the results JSON and
    per-clip CSV.

    Returns the results dict as written, plus ``wandb_run``: the id of the W&B run the results
    were added to (the run that trained the checkpoint, when it logged to W&B), else None. A
    process other than 0 of a running process group returns {} (process 0 writes).
    """
    check_request(req)
    tune_allocator()  # speed only: large tensors from a kept heap (talking_faces.utils.allocator)
    _, world = process_rank()
    scored = score_on_devices(req) if req.devices > 1 and world == 1 else score(req)
    if scored is None:
        return {}
    out = Path(req.out)
    csv_path = out.with_name(out.stem + ".clips.csv")
    write_per_clip_csv(csv_path, scored.per_clip)
    results = results_record(req, scored, csv_path.name).to_dict()
    write_results(out, results)
    if req.ckpt is not None:
        from talking_faces.training.loggers import add_results_to_wandb

        results["wandb_run"] = add_results_to_wandb(
            req.ckpt, scored.run_config, results, scored.per_clip
        )
    else:
        results["wandb_run"] = None
    return results


def results_kind(req: EvaluationRequest) -> str:
    """The results' ``kind``: ``baseline``, ``generated`` (a folder scored) or ``model``."""
    if req.baseline is not None:
        return "baseline"
    return "generated" if req.generated is not None else "model"


def results_record(req: EvaluationRequest, scored: Scored, per_clip: str) -> ResultsRecord:
    """The results record of ``req`` from what was measured (``per_clip``: the CSV's name)."""
    from talking_faces.data.dataset import read_root_text
    from talking_faces.names import META_FILE

    metrics = scored.metrics
    folder = Path(req.out).parent
    kind = results_kind(req)
    meta = json.loads(read_root_text(req.data, META_FILE))
    return ResultsRecord(
        method=scored.method,
        kind=kind,
        label=label(req, scored.run_config),
        checkpoint=scored.checkpoint,
        baseline=({"name": req.baseline, "audio_shift": req.audio_shift} if req.baseline else None),
        generated=scored.generated,
        media=scored_media(kind, meta, scored.generated),
        dataset=scored.dataset,
        split=scored.split,
        pairs=scored.pairs,
        protocol=scored.protocol,
        protocol_sha256=protocol_sha256(scored.protocol),
        experts=scored.experts,
        metrics=metrics,
        higher_is_better=scored.higher_is_better,
        per_clip=per_clip,
        failures={
            "frames_without_landmarks": int(metrics.get("lmd_frames_failed", 0)),
            "clips_without_lmd": int(metrics.get("lmd_clips_unscored", 0)),
            "clips_skipped": len(scored.skipped),
            "skipped": scored.skipped,
        },
        seed=req.seed,
        drive=req.drive,
        generation_options=scored.options,
        method_metrics=scored.method_metrics,
        run_config=scored.run_config or None,
        videos=[{**v, "path": str(Path(v["path"]).relative_to(folder))} for v in scored.videos],
        num_samples=req.num_samples,
        batch_size=req.batch_size,
        audio=scored.audio,
        package_version=__version__,
        git_commit=git_info()["commit"],
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        timing={
            "seconds": round(scored.seconds, 3),
            "frames": scored.frames,
            "frames_per_second": round(scored.frames / max(scored.seconds, 1e-9), 2),
            "device": scored.device,
            "devices": scored.world,
            # the real frames' landmarks read from the cache or computed (process 0's batches)
            "reference_landmarks": scored.reference_cache,
        },
        provenance=req.provenance,
    )


__all__ = ["EvaluationRequest", "evaluate", "results_record"]

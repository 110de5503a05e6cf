"""One process's share of an evaluation: generate or take each batch's clips, score them, gather.

request -> dataset, method (:mod:`~talking_faces.evaluation.request`), scorers and suite
(:mod:`~talking_faces.evaluation.scorers`), pairs (:mod:`~talking_faces.evaluation.pairs`) ->
**BatchScorer** per batch (a baseline's clip, a ``--generated`` folder's files,
:mod:`~talking_faces.evaluation.generated`, or ``model.generate()``, seeded by the batch index;
the LMD reference; ``suite.update``; the per-pair row and sample video) -> **gather_in_pair_order**
-> ``suite.compute()`` (reduced over the processes) -> :class:`Scored` (process 0; what the
results record is built from, :mod:`talking_faces.evaluation.evaluate`)

Batch i (pairs of one length, in pair order) is scored by process i mod N and generation is
seeded by its index, so every process count scores the same clips; the metric states sum their
per-pair terms exactly (:mod:`talking_faces.metrics.exact`), so the metrics are those of one
process to the last bit.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from talking_faces.data.batch import collate_batch
from talking_faces.data.dataset import PreparedDataset, TestPairDataset, WindowConfig
from talking_faces.errors import UserError
from talking_faces.evaluation.baselines import (
    BaselineBatch,
    BaselineClip,
    BaselineSetup,
    baseline_clip,
)
from talking_faces.evaluation.generated import GeneratedFolder
from talking_faces.evaluation.pairs import PairSelection, dataset_record, pair_dataset
from talking_faces.evaluation.request import (
    EvaluationRequest,
    Method,
    audio_record,
    label,
    load_method,
    window_config,
)
from talking_faces.evaluation.scorers import Scorers, build_scorers, build_suite
from talking_faces.utils.progress import progress

if TYPE_CHECKING:
    from talking_faces.metrics import MetricSuite, SampleDiversity

#: the per-pair diversity values the per-clip rows carry (as ``diversity_<key>``)
ROW_DIVERSITY_KEYS = ("l1", "mouth_share", "lse_c_spread")


def process_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process in a running ``torch.distributed`` group, else
    ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass  # not frozen: Fabric's launcher rebuilds what a process returns
class Scored:
    """What process 0 of an evaluation measured: everything the results record holds that the
    request does not."""

    #: the method's name (``model.config.name``) or the baseline's
    method: str
    #: the checkpoint's ``{"path", "sha256"}`` (None for a baseline)
    checkpoint: dict[str, str] | None
    run_config: dict[str, Any]
    #: generation options applied ({} for a baseline)
    options: dict[str, Any]
    dataset: dict[str, Any]
    split: str
    pairs: dict[str, Any]
    #: the resolved protocol and the experts that scored (:class:`Scorers`)
    protocol: dict[str, Any]
    experts: dict[str, Any]
    metrics: dict[str, Any]
    higher_is_better: dict[str, bool | None]
    #: every process's per-pair rows, skipped pairs and sample videos, in pair order
    per_clip: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    videos: list[dict[str, Any]]
    frames: int
    method_metrics: dict[str, Any]
    audio: dict[str, Any]
    seconds: float
    #: process 0's device (``cuda:0`` under ``--devices N --device cuda``)
    device: str
    #: processes that scored
    world: int
    #: the results' ``generated`` entry when a folder was scored (else None)
    generated: dict[str, Any] | None = None
    #: process 0's reference-landmark cache use (None: no cache)
    reference_cache: dict[str, Any] | None = None


# ----------------------------------------------------------------------------- one batch
@dataclass
class BatchScorer:
    """Scores batches into ``suite`` (and ``diversity``), collecting the per-pair rows, skipped
    pairs and sample videos of this process."""

    req: EvaluationRequest
    scorers: Scorers
    suite: MetricSuite
    diversity: SampleDiversity | None
    #: the method (None: ``baseline`` makes the clips)
    method: Method | None
    baseline: BaselineClip | None
    video_dir: Path
    #: the folder of generated videos scored in place of a method (``--generated``)
    generated: GeneratedFolder | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (pair, record)
    videos: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0

    def __call__(self, batch_idx: int, indices: list[int], batch: dict[str, Any]) -> None:
        """Score batch ``batch_idx`` (pairs ``indices``)."""
        from talking_faces.metrics.sync import num_sync_windows

        device = self.req.device
        target = batch["frames"].to(device)
        waveform = batch["waveform"].to(device)
        b, t = target.shape[:2]
        if self.scorers.syncnet is not None and num_sync_windows(t, waveform.shape[-1]) < 1:
            self.skipped += [
                (j, {"clip_id": c, "reason": "too-short-for-syncnet"})
                for j, c in zip(indices, batch["clip_id"], strict=True)
            ]
            return
        if self.baseline is not None:
            pred, waveform = self.baseline(BaselineBatch(batch, indices, target, waveform))
        elif self.generated is not None:
            pred = self.generated.clips(indices, t).to(device)
        elif self.method is not None:
            pred = self._generate(self.method, batch_idx, batch, target, waveform)
        else:
            raise ValueError("a BatchScorer needs a method, a baseline or a generated folder")
        ref, ref_valid = self._reference_landmarks(batch, target)
        identity = batch["identity"].to(device) if self.suite.csim is not None else None
        known = bool(torch.as_tensor(batch["silence_known"]).all())
        self.suite.update(
            pred,
            target,
            waveform,
            ref,
            ref_valid,
            clip_ids=batch["clip_id"],
            identity=identity,
            silence=batch["silence"].to(device) if known else None,
        )
        self.frames += b * t
        for i, j in enumerate(indices):
            row = {
                "pair": j,
                "identity_clip_id": batch["identity_clip_id"][i],
                "kind": batch["kind"][i],
            }
            if self.generated is not None:
                row.update(self.generated.row(j))
            if j < self.req.videos:
                video = write_sample_video(self.video_dir, j, batch, i, target, pred, waveform)
                self.videos.append(video)
            if self.diversity is not None:
                for key in ROW_DIVERSITY_KEYS:
                    if key in self.diversity.batch_values:
                        row[f"diversity_{key}"] = float(self.diversity.batch_values[key][i])
            self.rows.append(row)

    def _generate(
        self,
        method: Method,
        batch_idx: int,
        batch: dict[str, Any],
        target: Tensor,
        waveform: Tensor,
    ) -> Tensor:
        """The method's first sample (``B,T,3,H,W`` in [0,1]); all samples go to diversity."""
        from talking_faces.metrics.diversity import mouth_mask

        req, model = self.req, method.model
        gen = torch.Generator(device=req.device).manual_seed(req.seed + batch_idx)
        identity = batch["identity"].to(req.device)
        with torch.no_grad():
            if req.drive == "audio":
                audio = batch["audio"].to(req.device)
                samples = model.generate(identity, audio, req.num_samples, generator=gen)
            else:
                samples = model.generate_driven(
                    identity, target, req.drive, req.num_samples, generator=gen
                )
        pred = samples[:, 0].clamp(0, 1)
        if self.diversity is not None:
            samples = samples.clamp(0, 1)
            mouth = mouth_mask(
                batch["landmarks"].to(req.device),
                batch["landmarks_valid"].to(req.device),
                *samples.shape[-2:],
            )
            suite = self.suite
            lse_c = suite.sample_lse_c(samples, waveform) if suite.lse is not None else None
            self.diversity.update(samples, mouth=mouth, lse_c=lse_c)
        return pred

    def _reference_landmarks(self, batch: dict[str, Any], target: Tensor) -> tuple[Tensor, Tensor]:
        """The real frames' landmarks LMD compares with: the landmark expert's (``lmd_reference:
        expert``) or the dataset's."""
        landmark_model = self.scorers.landmark_model
        if self.scorers.lmd_reference == "expert" and landmark_model is not None:
            b, t = target.shape[:2]
            cache = self.scorers.reference_cache
            if cache is not None:  # the same real frames in every evaluation of a dataset
                ref = cache.landmarks(target, landmark_model)
            else:
                ref = landmark_model(target.flatten(0, 1)).view(b, t, 68, 2)
            return ref, torch.ones(b, t, dtype=torch.bool, device=self.req.device)
        return batch["landmarks"].to(self.req.device), batch["landmarks_valid"].to(self.req.device)


def run_batches(
    scorer: BatchScorer,
    pairs: TestPairDataset,
    mine: list[tuple[int, list[int]]],
    rank: int,
) -> None:
    """Load the batches ``mine`` (``(batch index, pair indices)``) of ``pairs`` and score each."""
    req = scorer.req
    loader = torch.utils.data.DataLoader(
        pairs,
        batch_sampler=[b for _, b in mine],
        num_workers=req.num_workers,
        collate_fn=collate_batch,
    )
    quiet: dict[str, Any] = {"disable": True} if rank else {}  # one bar: process 0's
    bar = progress(
        total=sum(len(b) for _, b in mine),
        desc=f"evaluate {req.baseline or Path(str(req.generated or req.ckpt)).name}",
        unit="pair",
        **quiet,
    )
    for (batch_idx, indices), batch in zip(mine, loader, strict=True):
        scorer(batch_idx, indices, batch)
        bar.update(len(indices))
    bar.close()


def write_sample_video(
    folder: Path,
    pair: int,
    batch: dict[str, Any],
    i: int,
    target: Tensor,
    pred: Tensor,
    waveform: Tensor,
) -> dict[str, Any]:
    """Write pair ``pair`` (row ``i`` of the batch) as ``folder/<pair>-<clip>.mp4``: the real
    clip beside the generated one (``target``, ``pred``: ``B,T,3,H,W`` in [0,1]) with the
    scored audio (``waveform``: ``B,S``) muxed; return its record for the results."""
    from talking_faces.utils.mp4 import side_by_side, to_uint8_video, write_clip_mp4

    clip = str(batch["clip_id"][i])
    path = folder / f"{pair:04d}-{clip.replace('/', '_')}.mp4"
    frames = side_by_side(target[i], pred[i])
    write_clip_mp4(path, to_uint8_video(frames), waveform[i].float().cpu().numpy())
    return {
        "pair": pair,
        "clip_id": clip,
        "identity_clip_id": str(batch["identity_clip_id"][i]),
        "layout": "real | generated",
        "path": str(path),
    }


# ----------------------------------------------------------------------------- all processes
def gather_in_pair_order(
    rows: list[dict[str, Any]],
    skipped: list[tuple[int, dict[str, str]]],
    videos: list[dict[str, Any]],
    frames: int,
) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[dict[str, Any]], int]:
    """Every process's per-pair rows, skipped pairs and video records, each sorted by pair index,
    and the frames scored by all of them (one process: its own, sorted)."""
    from talking_faces.utils.distributed import all_gather_objects

    parts = all_gather_objects((rows, skipped, videos, frames))
    return (
        sorted((r for p in parts for r in p[0]), key=lambda r: r["pair"]),
        [record for _, record in sorted((s for p in parts for s in p[1]), key=lambda s: s[0])],
        sorted((v for p in parts for v in p[2]), key=lambda v: v["pair"]),
        sum(p[3] for p in parts),
    )


def compute_metrics(suite: MetricSuite, diversity: SampleDiversity | None) -> dict[str, Any]:
    """The suite's (and diversity's) metrics, reduced over the processes (torchmetrics states;
    a collective: every process calls it)."""
    with warnings.catch_warnings():
        # a process given no batch (fewer batches than processes) still joins the reduction
        warnings.filterwarnings("ignore", message=r".*called before the ``update`` method")
        metrics = suite.compute()
        if diversity is not None:
            for key, value in diversity.compute().items():
                metrics[f"diversity_{key}"] = float(value)
    return metrics


def method_metrics(
    method: Method, req: EvaluationRequest, window: WindowConfig, split: str
) -> dict[str, Any]:
    """What the method adds through ``TalkingFaceModule.method_metrics`` (e.g. davs's word
    accuracy and retrieval), on the evaluated split with the model's audio features."""
    from talking_faces.models.base import MethodEvalData

    data = MethodEvalData(
        root=req.data,
        split=split,
        audio=audio_record(window),
        device=torch.device(req.device),
        seed=req.seed,
        batch_size=req.batch_size,
        limit=req.limit,
    )
    return method.model.method_metrics(data)


# ----------------------------------------------------------------------------- the stages
def score(req: EvaluationRequest) -> Scored | None:
    """Score this process's batches of ``req`` (a checked request) and gather every process's;
    process 0 returns what was measured, the others None."""
    rank, world = process_rank()
    started = time.perf_counter()
    torch.manual_seed(req.seed)
    prepared = PreparedDataset.load(req.data)
    method = load_method(req, prepared)
    scorers = build_scorers(
        req.protocol,
        req.data,
        req.syncnet,
        req.landmarks_model,
        req.syncnet_public,
        req.device,
        arcface=req.arcface,
    )
    window = window_config(method)
    pairs = pair_dataset(prepared, req.split, window)
    selection = PairSelection.of(prepared, pairs, req.limit, req.data)
    suite, diversity = build_suite(scorers, req.protocol, req.num_samples, req.device)
    baseline = None
    if req.baseline is not None:
        setup = BaselineSetup(pairs, selection.count, req.seed, req.audio_shift, req.device)
        baseline = baseline_clip(req.baseline, setup)
    generated = None
    if req.generated is not None:  # every pair's file found before anything is scored
        scored_pairs, size = pairs.pairs[: selection.count], int(prepared.meta["size"])
        generated = GeneratedFolder.match(req.generated, scored_pairs, size)
    out = Path(req.out)
    video_dir = out.with_name(out.stem + ".videos")
    scorer = BatchScorer(req, scorers, suite, diversity, method, baseline, video_dir, generated)
    run_batches(scorer, pairs, selection.batches(req.batch_size, rank, world), rank)
    per_clip, skipped, videos, frames = gather_in_pair_order(
        [{**e, **row} for e, row in zip(scorer.rows, suite.per_clip(), strict=True)],
        scorer.skipped,
        scorer.videos,
        scorer.frames,
    )
    if not per_clip:
        raise UserError(f"no pair of {req.data} could be scored (all were too short)")
    metrics = compute_metrics(suite, diversity)
    if rank != 0:  # the collectives are done; process 0 writes the results
        return None
    extra = method_metrics(method, req, window, pairs.split) if method is not None else {}
    seconds = time.perf_counter() - started
    return Scored(
        method=method.name if method is not None else str(req.baseline or label(req, {})),
        checkpoint=method.checkpoint if method is not None else None,
        run_config=method.run_config if method is not None else {},
        options=method.options if method is not None else {},
        dataset=dataset_record(prepared),
        split=pairs.split,
        pairs=selection.record(),
        protocol=scorers.resolved,
        experts=scorers.experts,
        metrics=metrics,
        higher_is_better={k: v for k, v in suite.higher_is_better().items() if k in metrics},
        per_clip=per_clip,
        skipped=skipped,
        videos=videos,
        frames=frames,
        method_metrics=extra,
        audio=audio_record(window),
        seconds=seconds,
        device=str(req.device),
        world=world,
        generated=generated.record(per_clip) if generated is not None else None,
        reference_cache=(
            scorers.reference_cache.record() if scorers.reference_cache is not None else None
        ),
    )


__all__ = [
    "BatchScorer",
    "Scored",
    "compute_metrics",
    "gather_in_pair_order",
    "method_metrics",
    "process_rank",
    "run_batches",
    "score",
    "write_sample_video",
]

"""Scoring a checkpoint or a reference baseline on a prepared dataset's fixed test pairs.

prepared dataset (pairs.json) -> TestPairDataset -> model.generate() or a baseline ->
MetricSuite (one protocol, with the dataset's experts) -> **results JSON + per-clip CSV**
-> leaderboard

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
order. With ``devices`` > 1 (:mod:`talking_faces.evaluation.distributed`)
batch i is generated and scored by process i mod N, the metric states are reduced across the
processes and the per-pair rows gathered in pair order, so the results equal a one-process run's
(the metrics to the rounding of their float64 sums, added in another order).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from talking_faces import __version__
from talking_faces.config.files import named_file
from talking_faces.data import storage
from talking_faces.data.batch import collate_batch
from talking_faces.data.dataset import PreparedDataset, TestPairDataset, WindowConfig
from talking_faces.errors import UserError
from talking_faces.evaluation.baselines import (
    BASELINES,
    derangement,
    fit_length,
    shift_waveform,
    static_frames,
)
from talking_faces.evaluation.results import RESULTS_FORMAT, protocol_sha256, write_results
from talking_faces.utils.io import atomic_path, sha256_file, sha256_json
from talking_faces.utils.progress import progress
from talking_faces.utils.provenance import git_info

#: keys of a protocol file that choose the scoring networks (the rest are Protocol fields)
SCORER_KEYS = ("syncnet", "landmarks", "lmd_reference", "lpips")
SYNCNET_CHOICES = ("expert", "public", "none")
LANDMARK_CHOICES = ("expert", "none")
LMD_REFERENCES = ("expert", "dataset")
#: the key naming the metric that ranks a leaderboard group under the protocol
PRIMARY_METRIC_KEY = "primary_metric"
#: Protocol fields that a SyncNet expert fixes (it was trained on those inputs)
LSE_INPUT_KEYS = ("lse_mode", "lse_crop_box", "lse_channel_order")
PROTOCOLS_DIR = Path("experiments") / "protocols"


# ----------------------------------------------------------------------------- protocols
def protocol_path(name: str) -> Path:
    """The protocol file for ``name``: a path to a YAML file, or ``experiments/protocols/NAME.yaml``
    (looked up in the current folder, then in the source checkout)."""
    path, known = named_file("protocols", name)
    if path.is_file():
        return path
    raise UserError(
        f"no protocol {name!r}: expected {path}; known protocols: "
        f"{', '.join(known) or 'none'} (or pass a path to a YAML file)"
    )


def load_protocol_file(name: str) -> dict[str, Any]:
    """The raw mapping of protocol ``name`` (``name`` defaults to the file's stem)."""
    path = protocol_path(name)
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:
        raise UserError(f"protocol file {path} is not valid YAML ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UserError(f"protocol file {path} must hold a mapping of keys to values")
    data.setdefault("name", path.stem)
    return data


# ----------------------------------------------------------------------------- scorers
class ExpertLandmarkModel:
    """The landmark expert as the metric suite's ``landmark_model``: ``N,3,H,W`` in [0,1] ->
    ``N,68,2`` in those frames' pixels (frames are resized to the expert's crop size first)."""

    def __init__(self, expert: nn.Module, batch_size: int = 256) -> None:
        self.expert = expert
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        return self.expert.predict_landmarks(frames, self.batch_size)


@dataclass
class Scorers:
    """Everything that scores under a protocol, and its resolved description."""

    protocol: Any  # talking_faces.metrics.Protocol
    resolved: dict[str, Any]
    syncnet: nn.Module | None = None
    landmark_model: Callable[[Tensor], Tensor] | None = None
    lmd_reference: str = "expert"
    lpips: bool = False
    experts: dict[str, Any] = field(default_factory=dict)


def _missing_expert(kind: str, prep: str, flag: str) -> UserError:
    from talking_faces.experts import TRAIN_COMMANDS

    label = {"syncnet": "SyncNet", "landmarks": "landmark"}[kind]
    if storage.is_remote(prep):
        where = storage.join(prep, "experts", f"{kind}.ckpt")
        return UserError(
            f"no {label} expert at {where}: train one on a local copy of the dataset "
            f"(`{TRAIN_COMMANDS[kind].format(prep='LOCAL_PREP')}`) and upload it with "
            f"`talking-faces prepare SOURCE {prep} ... --staging LOCAL_PREP` "
            f"(docs/scale-out.md), or pass {flag} PATH"
        )
    return UserError(
        f"no {label} expert for {prep}: train one with "
        f"`{TRAIN_COMMANDS[kind].format(prep=prep)}` or pass {flag} PATH"
    )


def dataset_expert(prep: str, name: str) -> tuple[Path | None, str]:
    """``(local file or None, its location)`` of the expert ``name`` (``syncnet``,
    ``landmarks``) of a prepared dataset: ``PREP/experts/<name>.ckpt``, for an ``s3://`` dataset
    fetched to the local cache (:func:`talking_faces.data.storage.fetch`)."""
    from talking_faces.experts import EXPERTS_DIR, expert_path

    if not storage.is_remote(prep):
        path = expert_path(prep, name)
        return (path if path.is_file() else None), str(path)
    return (
        storage.fetch_dataset_file(prep, EXPERTS_DIR, f"{name}.ckpt"),
        storage.join(prep, EXPERTS_DIR, f"{name}.ckpt"),
    )


def build_scorers(
    protocol_name: str,
    prep: str,
    syncnet_path: str | None = None,
    landmarks_path: str | None = None,
    syncnet_public: str | None = None,
    device: str | torch.device = "cpu",
) -> Scorers:
    """Load the protocol and the networks it needs; resolve it into the dict results record.

    Raises:
        UserError: unknown protocol keys or values, a missing expert (with the command that
            trains it), an expert trained for other LSE inputs than the protocol names.
    """
    from talking_faces.metrics import Protocol

    raw = load_protocol_file(protocol_name)
    known = {f.name for f in dataclasses.fields(Protocol)} | set(SCORER_KEYS)
    known.add(PRIMARY_METRIC_KEY)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(
            f"protocol {raw['name']!r}: unknown keys {', '.join(unknown)}; known keys: "
            f"{', '.join(sorted(known))}"
        )
    scorer = {k: raw.pop(k) for k in SCORER_KEYS if k in raw}
    primary = raw.pop(PRIMARY_METRIC_KEY, None)
    choice = {
        "syncnet": str(scorer.get("syncnet", "expert")),
        "landmarks": str(scorer.get("landmarks", "expert")),
        "lmd_reference": str(scorer.get("lmd_reference", "expert")),
    }
    for key, allowed in (
        ("syncnet", SYNCNET_CHOICES),
        ("landmarks", LANDMARK_CHOICES),
        ("lmd_reference", LMD_REFERENCES),
    ):
        if choice[key] not in allowed:
            raise UserError(
                f"protocol {raw['name']!r}: {key} must be one of {', '.join(allowed)}, "
                f"got {choice[key]!r}"
            )
    lpips = bool(scorer.get("lpips", False))
    experts: dict[str, Any] = {}
    described: dict[str, Any] = {}

    syncnet = None
    if choice["syncnet"] == "expert":
        from talking_faces.experts import load_expert

        if syncnet_path:
            path = Path(syncnet_path)
            where = str(path)
            if not path.is_file():
                raise UserError(f"SyncNet expert {path} does not exist")
        else:
            found, where = dataset_expert(prep, "syncnet")
            if found is None:
                raise _missing_expert("syncnet", prep, "--syncnet")
            path = found
        expert, digest = load_expert(path, "syncnet")
        settings = expert.lse_settings()
        for key in LSE_INPUT_KEYS:
            if key in raw and _norm(raw[key]) != _norm(settings[key]):
                raise UserError(
                    f"protocol {raw['name']!r} scores LSE with {key}={raw[key]!r} but the SyncNet "
                    f"expert {path} was trained with {settings[key]!r}; retrain it with "
                    f"model.{_EXPERT_FIELD[key]}=... or drop {key} from the protocol"
                )
        raw.update(settings)
        syncnet = expert.net.to(device).eval()
        experts["syncnet"] = {"kind": "expert", "path": where, "sha256": digest}
        described["syncnet"] = {
            "kind": "expert",
            "sha256": digest,
            "input_size": expert.config.input_size,
        }
    elif choice["syncnet"] == "public":
        from talking_faces.nn.syncnet import load_syncnet, resolve_syncnet_path

        path = resolve_syncnet_path(syncnet_public)
        syncnet = load_syncnet(path).to(device).eval()
        digest = sha256_file(path)
        experts["syncnet"] = {"kind": "public", "path": str(path), "sha256": digest}
        described["syncnet"] = {"kind": "public", "sha256": digest, "input_size": 224}
    else:
        described["syncnet"] = {"kind": "none"}

    landmark_model = None
    if choice["landmarks"] == "expert":
        from talking_faces.experts import load_expert

        if landmarks_path:
            path = Path(landmarks_path)
            where = str(path)
            if not path.is_file():
                raise UserError(f"landmark expert {path} does not exist")
        else:
            found, where = dataset_expert(prep, "landmarks")
            if found is None:
                raise _missing_expert("landmarks", prep, "--landmarks-model")
            path = found
        expert, digest = load_expert(path, "landmarks")
        landmark_model = ExpertLandmarkModel(expert.to(device).eval())
        experts["landmarks"] = {"kind": "expert", "path": where, "sha256": digest}
        described["landmarks"] = {"kind": "expert", "sha256": digest}
    else:
        described["landmarks"] = {"kind": "none"}

    protocol = Protocol.from_dict(raw)
    resolved = {
        **protocol.to_dict(),
        "lpips": lpips,
        # no LMD without a landmark model: no reference to record
        "lmd_reference": choice["lmd_reference"] if landmark_model is not None else None,
        "syncnet": described["syncnet"],
        "landmarks": described["landmarks"],
    }
    resolved[PRIMARY_METRIC_KEY] = primary_metric(raw["name"], primary, resolved)
    return Scorers(
        protocol=protocol,
        resolved=resolved,
        syncnet=syncnet,
        landmark_model=landmark_model,
        lmd_reference=choice["lmd_reference"],
        lpips=lpips,
        experts=experts,
    )


def scored_metrics(resolved: dict[str, Any]) -> list[str]:
    """The ranking metrics a resolved protocol scores (those with a direction)."""
    metrics = ["psnr", "ssim"]
    metrics += ["lpips"] if resolved.get("lpips") else []
    metrics += ["cpbd"] if resolved.get("cpbd") else []
    metrics += ["lmd"] if resolved["landmarks"]["kind"] != "none" else []
    metrics += ["lse_d", "lse_c"] if resolved["syncnet"]["kind"] != "none" else []
    return metrics


def primary_metric(name: str, given: Any, resolved: dict[str, Any]) -> str:
    """The protocol's primary metric (what ranks its leaderboard table): ``primary_metric`` of
    the file, else ``lse_c`` when it scores lip sync, else ``lmd``, else ``ssim``.

    Raises:
        UserError: a metric the protocol does not score.
    """
    scored = scored_metrics(resolved)
    if given is None:
        return next(m for m in ("lse_c", "lmd", "ssim") if m in scored)
    if str(given) not in scored:
        raise UserError(
            f"protocol {name!r}: primary_metric {given!r} is not scored under it; choose one of "
            f"{', '.join(scored)}"
        )
    return str(given)


_EXPERT_FIELD = {
    "lse_mode": "crop_mode",
    "lse_crop_box": "crop_box",
    "lse_channel_order": "channel_order",
}


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [round(float(v), 6) for v in value]
    return value


# ----------------------------------------------------------------------------- provenance
def _dataset_record(prepared: PreparedDataset) -> dict[str, Any]:
    return {
        "path": str(prepared.root),
        # what the data is (comparison key) and the exact meta.json (provenance)
        "sha256": prepared.identity_sha256(),
        "meta_sha256": sha256_json(prepared.meta),
        "layout": prepared.meta.get("layout"),
        "size": prepared.meta.get("size"),
        "num_clips": prepared.meta.get("num_clips"),
    }


# ----------------------------------------------------------------------------- pairs
def pair_dataset(prepared: PreparedDataset, split: str, window: WindowConfig) -> TestPairDataset:
    """The pairs to score: ``pairs.json`` for its split; every clip of another split as a
    same-clip pair (hashed the same way)."""
    if split == prepared.pairs.get("split", "test"):
        return TestPairDataset(prepared, window)
    rows = prepared.rows(split)
    if not rows:
        raise UserError(
            f"split {split!r} of {prepared.root} has no clips; use --split "
            f"{prepared.pairs.get('split', 'test')}"
        )
    pairs = [{"identity": r["clip_id"], "audio": r["clip_id"], "kind": "same-clip"} for r in rows]
    own = dataclasses.replace(
        prepared, pairs={"split": split, "pairs": pairs, "sha256": sha256_json(pairs)}
    )
    return TestPairDataset(own, window)


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Consecutive indices grouped into batches of at most ``batch_size`` equal lengths."""
    batch: list[int] = []
    for i, n in enumerate(lengths):
        if batch and (len(batch) == batch_size or lengths[batch[0]] != n):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def process_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process in a running ``torch.distributed`` group, else
    ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_in_pair_order(
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


# ----------------------------------------------------------------------------- evaluation
@dataclass
class EvaluationRequest:
    """What ``talking-faces evaluate`` was asked to do."""

    data: str
    out: str
    ckpt: str | None = None
    baseline: str | None = None
    split: str = "test"
    protocol: str = "default"
    syncnet: str | None = None
    landmarks_model: str | None = None
    syncnet_public: str | None = None
    batch_size: int = 8
    num_workers: int = 0
    num_samples: int = 1
    seed: int = 0
    audio_shift: int = 0
    device: str = "cpu"
    limit: int | None = None
    #: what drives generation: "audio", or "video" for methods that can be driven by frames (the
    #: pair's real frames then drive the identity)
    drive: str = "audio"
    #: test-time options of the method (its ``generation_options``), e.g. {"wid_scale": 1.5}
    options: dict[str, Any] = field(default_factory=dict)
    #: sample videos: the first ``videos`` pairs as ``<out stem>.videos/<pair>.mp4``
    videos: int = 1
    #: recorded as the results' ``provenance`` (e.g. the sweep and trial that asked for them)
    provenance: dict[str, Any] | None = None
    #: processes the pairs are sharded over (:mod:`talking_faces.evaluation.distributed`)
    devices: int = 1


def _check_request(req: EvaluationRequest) -> None:
    if (req.ckpt is None) == (req.baseline is None):
        raise UserError("give either a checkpoint CKPT or --baseline NAME (not both)")
    if req.baseline is not None and req.baseline not in BASELINES:
        raise UserError(f"unknown baseline {req.baseline!r}; choose {', '.join(BASELINES)}")
    if req.audio_shift and req.baseline != "ground-truth":
        raise UserError("--audio-shift applies to --baseline ground-truth only")
    if req.num_samples < 1 or req.batch_size < 1:
        raise UserError("--samples and --batch-size must be at least 1")
    if req.num_samples > 1 and req.baseline is not None:
        raise UserError("--samples > 1 needs a model checkpoint; baselines have one output")
    if req.limit is not None and req.limit < 1:
        raise UserError("--limit must be at least 1")
    if req.devices < 1:
        raise UserError("--devices must be at least 1")
    if req.videos < 0:
        raise UserError("--videos must be 0 or more")
    if req.drive not in ("audio", "video"):
        raise UserError(f"--drive must be audio or video, got {req.drive!r}")
    if req.baseline is not None and (req.drive != "audio" or req.options):
        raise UserError("--drive and --option apply to a model checkpoint, not to a baseline")


def apply_generation_options(model: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Set test-time options on ``model.config`` (only the method's ``generation_options``);
    return the resolved options, as results record them."""
    allowed = tuple(getattr(model, "generation_options", ()))
    applied: dict[str, Any] = {}
    for key, value in options.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise UserError(
                f"--option {key}: not a test-time option of method '{model.config.name}' "
                f"(its options: {known})"
            )
        current = getattr(model.config, key)
        try:
            value = type(current)(value)
        except (TypeError, ValueError):
            raise UserError(
                f"--option {key}={value!r}: expected a {type(current).__name__}"
            ) from None
        setattr(model.config, key, value)
        applied[key] = value
    return applied


def _load_model(path: str, device: str) -> tuple[Any, dict[str, Any]]:
    from talking_faces.models import TalkingFaceModule, load_model

    model = load_model(path)
    if not isinstance(model, TalkingFaceModule):
        raise UserError(
            f"{path} holds the {model.config.name!r} expert, not a talking-face method; pass it "
            f"with --{'syncnet' if model.config.name == 'syncnet' else 'landmarks-model'} instead"
        )
    model = model.to(device).eval()
    run_config = getattr(model, "run_config", None) or {}
    return model, run_config


def _window_config(model: Any, run_config: dict[str, Any]) -> WindowConfig:
    """Audio features as the model was trained on them (defaults for baselines)."""
    data = dict(run_config.get("data") or {})
    window = WindowConfig()
    kwargs = {
        k: data[k] for k in ("audio_feature", "audio_window", "drop_c0", "audio_pad") if k in data
    }
    cfg = getattr(model, "config", None)
    if cfg is not None and getattr(cfg, "audio_window", None):
        kwargs["audio_window"] = int(cfg.audio_window)
    return dataclasses.replace(window, **kwargs)


def evaluate(req: EvaluationRequest) -> dict[str, Any]:
    """Score ``req.ckpt`` or ``req.baseline`` and write the results JSON and per-clip CSV.

    Returns the results dict as written, plus ``wandb_run``: the id of the W&B run the results
    were added to (the run that trained the checkpoint, when it logged to W&B), else None.
    """
    from talking_faces.metrics import MetricSuite, SampleDiversity
    from talking_faces.metrics.diversity import mouth_mask
    from talking_faces.metrics.sync import num_sync_windows

    _check_request(req)
    rank, world = process_rank()
    if req.devices > 1 and world == 1:
        from talking_faces.evaluation.distributed import evaluate_on_devices

        return evaluate_on_devices(req)
    started = time.perf_counter()
    torch.manual_seed(req.seed)
    prepared = PreparedDataset.load(req.data)
    model, run_config, ckpt_record = None, {}, None
    options: dict[str, Any] = {}
    if req.ckpt is not None:
        model, run_config = _load_model(req.ckpt, req.device)
        model.check_num_samples(req.num_samples)
        size = getattr(model.config, "image_size", None)
        if size is not None and int(size) != int(prepared.meta["size"]):
            raise UserError(
                f"{req.ckpt} generates {size} px frames but {req.data} holds "
                f"{prepared.meta['size']} px crops; evaluate it on a dataset prepared with "
                f"--size {size}"
            )
        ckpt_record = {"path": str(req.ckpt), "sha256": sha256_file(req.ckpt)}
        if req.drive not in model.drives:
            raise UserError(
                f"method '{model.config.name}' cannot be driven by {req.drive} (it takes "
                f"{', '.join(model.drives)})"
            )
        options = apply_generation_options(model, dict(req.options))
    scorers = build_scorers(
        req.protocol, req.data, req.syncnet, req.landmarks_model, req.syncnet_public, req.device
    )
    window = _window_config(model, run_config)
    pairs = pair_dataset(prepared, req.split, window)
    rows_by_id = {r["clip_id"]: r for r in prepared.manifest if r["status"] == "ok"}
    count = len(pairs) if req.limit is None else min(req.limit, len(pairs))
    if count == 0:
        raise UserError(f"{req.data} has no {req.split} pairs to score")
    lengths = [int(rows_by_id[p["audio"]]["frames"]) for p in pairs.pairs[:count]]

    lpips_model = _load_lpips(req.protocol) if scorers.lpips else None
    suite = MetricSuite(
        scorers.protocol,
        syncnet=scorers.syncnet,
        landmark_model=scorers.landmark_model,
        lpips=scorers.lpips,
        lpips_model=lpips_model,
    ).to(req.device)
    diversity = (
        SampleDiversity(lpips_model, num_samples=req.num_samples).to(req.device)
        if req.num_samples > 1
        else None
    )
    partner = derangement(count, req.seed) if req.baseline == "shuffled" else None

    skipped: list[tuple[int, dict[str, str]]] = []  # (pair index, record)
    extra: list[dict[str, Any]] = []
    frames_scored = 0
    # batch i (pairs of one length, in pair order) is scored by process i mod world; generation
    # is seeded by the batch's index, so every process count gives the same clips
    batches = enumerate(length_batches(lengths, req.batch_size))
    mine = [(i, b) for i, b in batches if i % world == rank]
    loader = torch.utils.data.DataLoader(
        pairs,
        batch_sampler=[b for _, b in mine],
        num_workers=req.num_workers,
        collate_fn=collate_batch,
    )
    bar = progress(
        total=sum(len(b) for _, b in mine),
        desc=f"evaluate {req.baseline or Path(req.ckpt).name}",
        unit="pair",
        **({"disable": True} if rank else {}),
    )
    video_dir = Path(req.out).with_name(Path(req.out).stem + ".videos")
    videos: list[dict[str, Any]] = []
    for (batch_idx, indices), batch in zip(mine, loader, strict=True):
        target = batch["frames"].to(req.device)
        waveform = batch["waveform"].to(req.device)
        b, t = target.shape[:2]
        if scorers.syncnet is not None and num_sync_windows(t, waveform.shape[-1]) < 1:
            skipped += [
                (j, {"clip_id": c, "reason": "too-short-for-syncnet"})
                for j, c in zip(indices, batch["clip_id"], strict=True)
            ]
            bar.update(b)
            continue
        if req.baseline == "ground-truth":
            pred = target
            waveform = shift_waveform(waveform, req.audio_shift)
        elif req.baseline == "static":
            pred = static_frames(batch["identity"].to(req.device), t)
        elif req.baseline == "shuffled":
            other = [pairs[partner[i]]["frames"] for i in indices]  # type: ignore[index]
            pred = torch.stack([fit_length(f, t) for f in other]).to(req.device).float() / 255.0
        else:
            gen = torch.Generator(device=req.device).manual_seed(req.seed + batch_idx)
            with torch.no_grad():
                if req.drive == "audio":
                    samples = model.generate(
                        batch["identity"].to(req.device),
                        batch["audio"].to(req.device),
                        req.num_samples,
                        generator=gen,
                    )
                else:
                    samples = model.generate_driven(
                        batch["identity"].to(req.device),
                        target,
                        req.drive,
                        req.num_samples,
                        generator=gen,
                    )
            pred = samples[:, 0].clamp(0, 1)
            if diversity is not None:
                samples = samples.clamp(0, 1)
                mouth = mouth_mask(
                    batch["landmarks"].to(req.device),
                    batch["landmarks_valid"].to(req.device),
                    *samples.shape[-2:],
                )
                lse_c = suite.sample_lse_c(samples, waveform) if suite.lse is not None else None
                diversity.update(samples, mouth=mouth, lse_c=lse_c)
        if scorers.lmd_reference == "expert" and scorers.landmark_model is not None:
            ref = scorers.landmark_model(target.flatten(0, 1)).view(b, t, 68, 2)
            ref_valid = torch.ones(b, t, dtype=torch.bool, device=req.device)
        else:
            ref = batch["landmarks"].to(req.device)
            ref_valid = batch["landmarks_valid"].to(req.device)
        suite.update(pred, target, waveform, ref, ref_valid, clip_ids=batch["clip_id"])
        frames_scored += b * t
        for i, j in enumerate(indices):
            row = {
                "pair": j,
                "identity_clip_id": batch["identity_clip_id"][i],
                "kind": batch["kind"][i],
            }
            if j < req.videos:
                videos.append(write_sample_video(video_dir, j, batch, i, target, pred, waveform))
            if diversity is not None:
                for key in ("l1", "mouth_share", "lse_c_spread"):
                    if key in diversity.batch_values:
                        row[f"diversity_{key}"] = float(diversity.batch_values[key][i])
            extra.append(row)
        bar.update(b)
    bar.close()
    # every process's rows, skipped pairs and videos, in pair order (all processes hold them)
    per_clip, skipped, videos, frames_scored = _gather_in_pair_order(
        [{**e, **row} for e, row in zip(extra, suite.per_clip(), strict=True)],
        skipped,
        videos,
        frames_scored,
    )
    if not per_clip:
        raise UserError(f"no pair of {req.data} could be scored (all were too short)")

    with warnings.catch_warnings():
        # a process given no batch (fewer batches than processes) still joins the reduction
        warnings.filterwarnings("ignore", message=r".*called before the ``update`` method")
        metrics = suite.compute()  # reduced over the processes (torchmetrics states)
        if diversity is not None:
            for key, value in diversity.compute().items():
                metrics[f"diversity_{key}"] = float(value)
    if rank != 0:  # the collectives are done; process 0 writes the results
        return {}
    method_metrics = _method_metrics(model, req, window, pairs.split) if model is not None else {}
    elapsed = time.perf_counter() - started
    higher = {k: v for k, v in suite.higher_is_better().items() if k in metrics}

    out = Path(req.out)
    csv_path = out.with_name(out.stem + ".clips.csv")
    write_per_clip_csv(csv_path, per_clip)

    method = req.baseline if req.baseline is not None else str(model.config.name)
    results = {
        "format": RESULTS_FORMAT,
        "method": method,
        "kind": "baseline" if req.baseline is not None else "model",
        "label": _label(req, run_config),
        "checkpoint": ckpt_record,
        "baseline": (
            {"name": req.baseline, "audio_shift": req.audio_shift} if req.baseline else None
        ),
        "dataset": _dataset_record(prepared),
        "split": pairs.split,
        "pairs": {
            # hash of the pairs actually scored (the pair file's own hash unless --limit cut it)
            "sha256": pairs.sha256 if count == len(pairs) else sha256_json(pairs.pairs[:count]),
            "file_sha256": pairs.sha256,
            "count": len(pairs),
            "evaluated": count,
        },
        "protocol": scorers.resolved,
        "protocol_sha256": protocol_sha256(scorers.resolved),
        "experts": scorers.experts,
        "metrics": metrics,
        "higher_is_better": higher,
        "per_clip": csv_path.name,
        "failures": {
            "frames_without_landmarks": int(metrics.get("lmd_frames_failed", 0)),
            "clips_without_lmd": int(metrics.get("lmd_clips_unscored", 0)),
            "clips_skipped": len(skipped),
            "skipped": skipped,
        },
        "seed": req.seed,
        "drive": req.drive,
        "generation_options": options,
        "method_metrics": method_metrics,
        "run_config": run_config or None,
        "videos": [{**v, "path": str(Path(v["path"]).relative_to(out.parent))} for v in videos],
        "num_samples": req.num_samples,
        "batch_size": req.batch_size,
        "audio": {
            k: getattr(window, k) for k in ("audio_feature", "audio_window", "audio_pad", "drop_c0")
        },
        "package_version": __version__,
        "git_commit": git_info()["commit"],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "timing": {
            "seconds": round(elapsed, 3),
            "frames": frames_scored,
            "frames_per_second": round(frames_scored / max(elapsed, 1e-9), 2),
            "device": str(req.device),
            "devices": world,
        },
    }
    if req.provenance is not None:
        results["provenance"] = req.provenance
    write_results(out, results)
    if req.ckpt is not None:
        from talking_faces.training.loggers import add_results_to_wandb

        results["wandb_run"] = add_results_to_wandb(req.ckpt, run_config, results, per_clip)
    else:
        results["wandb_run"] = None
    return results


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


def _method_metrics(
    model: Any, req: EvaluationRequest, window: WindowConfig, split: str
) -> dict[str, Any]:
    """What the method adds through ``TalkingFaceModule.method_metrics`` (e.g. davs's word
    accuracy and retrieval), on the evaluated split with the model's audio features."""
    from talking_faces.models.base import MethodEvalData

    data = MethodEvalData(
        root=req.data,
        split=split,
        audio={
            k: getattr(window, k) for k in ("audio_feature", "audio_window", "audio_pad", "drop_c0")
        },
        device=torch.device(req.device),
        seed=req.seed,
        batch_size=req.batch_size,
        limit=req.limit,
    )
    return model.method_metrics(data)


def _load_lpips(protocol: str) -> nn.Module:
    from talking_faces.errors import MissingWeightsError
    from talking_faces.metrics import load_lpips

    try:
        return load_lpips()
    except MissingWeightsError as exc:
        raise MissingWeightsError(
            f"{exc} (protocol {protocol!r} scores LPIPS; a protocol without it, e.g. "
            "--protocol synthetic, needs no weights)"
        ) from None


def _label(req: EvaluationRequest, run_config: dict[str, Any]) -> str:
    if req.baseline is not None:
        return req.baseline + (f" (audio {req.audio_shift:+d} frames)" if req.audio_shift else "")
    name = str(run_config.get("name") or (run_config.get("model") or {}).get("name") or "")
    label = name or Path(req.ckpt).stem
    notes = [f"{req.drive}-driven"] if req.drive != "audio" else []
    notes += [f"{k}={v}" for k, v in sorted(req.options.items())]
    return label + (f" ({', '.join(notes)})" if notes else "")


def write_per_clip_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """One row per scored pair (columns: the union of the rows' keys, first-seen order)."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


__all__ = [
    "EvaluationRequest",
    "Scorers",
    "build_scorers",
    "evaluate",
    "length_batches",
    "load_protocol_file",
    "pair_dataset",
    "protocol_path",
    "write_per_clip_csv",
    "write_sample_video",
    "primary_metric",
    "scored_metrics",
]

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
results compare only when the same networks scored them (see :mod:`talking_faces.results`).
Generation draws with ``torch.Generator().manual_seed(seed + batch index)``; scoring runs in one
process on one device.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from talking_faces import __version__
from talking_faces.baselines import (
    BASELINES,
    derangement,
    fit_length,
    shift_waveform,
    static_frames,
)
from talking_faces.data.batch import collate_batch
from talking_faces.data.dataset import PreparedDataset, TestPairDataset, WindowConfig
from talking_faces.errors import UserError
from talking_faces.results import RESULTS_FORMAT, protocol_sha256, write_results
from talking_faces.utils.io import atomic_path, sha256_file, sha256_json
from talking_faces.utils.progress import progress
from talking_faces.utils.provenance import git_info

#: keys of a protocol file that choose the scoring networks (the rest are Protocol fields)
SCORER_KEYS = ("syncnet", "landmarks", "lmd_reference", "lpips")
SYNCNET_CHOICES = ("expert", "public", "none")
LANDMARK_CHOICES = ("expert", "none")
LMD_REFERENCES = ("expert", "dataset")
#: Protocol fields that a SyncNet expert fixes (it was trained on those inputs)
LSE_INPUT_KEYS = ("lse_mode", "lse_crop_box", "lse_channel_order")
PROTOCOLS_DIR = Path("experiments") / "protocols"


# ----------------------------------------------------------------------------- protocols
def protocol_path(name: str) -> Path:
    """The protocol file for ``name``: a path to a YAML file, or ``experiments/protocols/NAME.yaml``
    (looked up in the current folder, then in the source checkout)."""
    given = Path(name)
    if given.suffix in (".yaml", ".yml") and given.is_file():
        return given
    candidates = [
        PROTOCOLS_DIR / f"{name}.yaml",
        Path(__file__).resolve().parents[1] / PROTOCOLS_DIR / f"{name}.yaml",
    ]
    for path in candidates:
        if path.is_file():
            return path
    folders = {c.parent for c in candidates if c.parent.is_dir()}
    known = sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
    raise UserError(
        f"no protocol {name!r}: expected {candidates[0]}; known protocols: "
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
    return UserError(
        f"no {label} expert for {prep}: train one with "
        f"`{TRAIN_COMMANDS[kind].format(prep=prep)}` or pass {flag} PATH"
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
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(
            f"protocol {raw['name']!r}: unknown keys {', '.join(unknown)}; known keys: "
            f"{', '.join(sorted(known))}"
        )
    scorer = {k: raw.pop(k) for k in SCORER_KEYS if k in raw}
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
        from talking_faces.experts import expert_path, load_expert

        path = Path(syncnet_path) if syncnet_path else expert_path(prep, "syncnet")
        if not path.is_file():
            if syncnet_path:
                raise UserError(f"SyncNet expert {path} does not exist")
            raise _missing_expert("syncnet", prep, "--syncnet")
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
        experts["syncnet"] = {"kind": "expert", "path": str(path), "sha256": digest}
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
        from talking_faces.experts import expert_path, load_expert

        path = Path(landmarks_path) if landmarks_path else expert_path(prep, "landmarks")
        if not path.is_file():
            if landmarks_path:
                raise UserError(f"landmark expert {path} does not exist")
            raise _missing_expert("landmarks", prep, "--landmarks-model")
        expert, digest = load_expert(path, "landmarks")
        landmark_model = ExpertLandmarkModel(expert.to(device).eval())
        experts["landmarks"] = {"kind": "expert", "path": str(path), "sha256": digest}
        described["landmarks"] = {"kind": "expert", "sha256": digest}
    else:
        described["landmarks"] = {"kind": "none"}

    protocol = Protocol.from_dict(raw)
    resolved = {
        **protocol.to_dict(),
        "lpips": lpips,
        "lmd_reference": choice["lmd_reference"],
        "syncnet": described["syncnet"],
        "landmarks": described["landmarks"],
    }
    return Scorers(
        protocol=protocol,
        resolved=resolved,
        syncnet=syncnet,
        landmark_model=landmark_model,
        lmd_reference=choice["lmd_reference"],
        lpips=lpips,
        experts=experts,
    )


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

    Returns the results dict (as written).
    """
    from talking_faces.metrics import MetricSuite, SampleDiversity
    from talking_faces.metrics.diversity import mouth_mask
    from talking_faces.metrics.sync import num_sync_windows

    _check_request(req)
    started = time.perf_counter()
    torch.manual_seed(req.seed)
    prepared = PreparedDataset.load(req.data)
    model, run_config, ckpt_record = None, {}, None
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

    skipped: list[dict[str, str]] = []
    extra: list[dict[str, Any]] = []
    frames_scored = 0
    loader = torch.utils.data.DataLoader(
        pairs,
        batch_sampler=list(length_batches(lengths, req.batch_size)),
        num_workers=req.num_workers,
        collate_fn=collate_batch,
    )
    bar = progress(total=count, desc=f"evaluate {req.baseline or Path(req.ckpt).name}", unit="pair")
    offset = 0
    for batch_idx, batch in enumerate(loader):
        indices = list(range(offset, offset + len(batch["clip_id"])))
        offset += len(indices)
        target = batch["frames"].to(req.device)
        waveform = batch["waveform"].to(req.device)
        b, t = target.shape[:2]
        if scorers.syncnet is not None and num_sync_windows(t, waveform.shape[-1]) < 1:
            skipped += [{"clip_id": c, "reason": "too-short-for-syncnet"} for c in batch["clip_id"]]
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
                samples = model.generate(
                    batch["identity"].to(req.device),
                    batch["audio"].to(req.device),
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
            if diversity is not None:
                for key in ("l1", "mouth_share", "lse_c_spread"):
                    if key in diversity.batch_values:
                        row[f"diversity_{key}"] = float(diversity.batch_values[key][i])
            extra.append(row)
        bar.update(b)
    bar.close()
    if not extra:
        raise UserError(f"no pair of {req.data} could be scored (all were too short)")

    metrics = suite.compute()
    if diversity is not None:
        for key, value in diversity.compute().items():
            metrics[f"diversity_{key}"] = float(value)
    elapsed = time.perf_counter() - started
    higher = {k: v for k, v in suite.higher_is_better().items() if k in metrics}

    out = Path(req.out)
    csv_path = out.with_name(out.stem + ".clips.csv")
    per_clip = [{**e, **row} for e, row in zip(extra, suite.per_clip(), strict=True)]
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
        },
    }
    write_results(out, results)
    return results


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
    name = run_config.get("name") or (run_config.get("model") or {}).get("name")
    return str(name or Path(req.ckpt).stem)


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
]

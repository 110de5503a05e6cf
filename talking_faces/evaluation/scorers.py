"""The networks that score under a protocol, loaded once per evaluation (per process).

protocol file (:mod:`talking_faces.evaluation.protocols`) + prepared dataset's experts
(``PREP/experts/<name>.ckpt`` or ``--syncnet`` / ``--landmarks-model``) and the real networks
(dlib's landmarks and face embedding, LPIPS, ArcFace) -> **build_scorers** -> :class:`Scorers`
(the Protocol, the SyncNet, the landmark model, the face embedder, LPIPS, the resolved protocol
and every network's record for the results: kind, path, sha256) -> **build_suite** ->
MetricSuite (+ SampleDiversity) -> the per-batch loop

Both experts are found and loaded by one path (:func:`load_dataset_expert`); what differs is what
each gives the suite: the SyncNet expert also fixes the LSE inputs (mode, crop box, channel order)
it was trained with, and a protocol naming other ones is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from talking_faces.data import storage
from talking_faces.errors import UserError
from talking_faces.evaluation.protocols import (
    LSE_INPUT_KEYS,
    PRIMARY_METRIC_KEY,
    load_protocol_file,
    primary_metric,
    split_protocol,
)
from talking_faces.names import EXPERTS_DIR
from talking_faces.utils.io import sha256_file

if TYPE_CHECKING:
    from talking_faces.evaluation.landmark_cache import ReferenceLandmarkCache
    from talking_faces.experts import LandmarkExpert
    from talking_faces.metrics import MetricSuite, Protocol, SampleDiversity
    from talking_faces.metrics.fid import VideoFID
    from talking_faces.nn.syncnet import SyncNet

#: the raw landmark statistics a protocol with ``naturalness: true`` scores
NATURALNESS_KEYS = ("lip_dynamics", "head_motion_dynamics", "eyebrow_dynamics", "silent_lip_mad")
#: where silent-lip stability takes its silences from
SILENCE_SOURCE = (
    "word alignments where the layout has them (GRID, synthetic), "
    "else webrtcvad (mode 2, 20 ms frames); >= 300 ms"
)
#: per expert: how messages name it and the flag that passes another file
_EXPERT_LABELS = {"syncnet": "SyncNet", "landmarks": "landmark"}
_EXPERT_FLAGS = {"syncnet": "--syncnet", "landmarks": "--landmarks-model"}
#: the SyncNet expert's config field behind each LSE input of a protocol
_EXPERT_FIELD = {
    "lse_mode": "crop_mode",
    "lse_crop_box": "crop_box",
    "lse_channel_order": "channel_order",
}


class ExpertLandmarkModel:
    """The landmark expert as the metric suite's ``landmark_model``: ``N,3,H,W`` in [0,1] ->
    ``N,68,2`` in those frames' pixels (frames are resized to the expert's crop size first)."""

    def __init__(self, expert: LandmarkExpert, batch_size: int = 256) -> None:
        self.expert = expert
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        return self.expert.predict_landmarks(frames, self.batch_size)


@dataclass
class Scorers:
    """Everything that scores under a protocol, and its resolved description."""

    protocol: Protocol
    resolved: dict[str, Any]
    syncnet: nn.Module | None = None
    landmark_model: Callable[[Tensor], Tensor] | None = None
    lmd_reference: str = "expert"
    lpips: bool = False
    experts: dict[str, Any] = field(default_factory=dict)
    #: the face embedder of identity similarity and its results key (``csim_dlib`` ...)
    identity_model: Callable[[Tensor], Tensor] | None = None
    identity_key: str = "csim_dlib"
    #: identity similarity on every k-th frame of each clip (the protocol's
    #: ``identity_frame_stride``)
    identity_frame_stride: int = 1
    #: the LPIPS module when the protocol scores LPIPS (loaded once, shared with diversity)
    lpips_model: nn.Module | None = None
    #: score the landmark dynamics and silent-lip stability
    naturalness: bool = False
    #: score the region metrics (face outside the mouth, eyes and brows, teeth)
    regions: bool = False
    #: FID on frames (a VideoFID, its Inception loaded once)
    fid: VideoFID | None = None
    #: the real frames' landmarks kept between evaluations (``lmd_reference: expert`` on the CPU;
    #: None when off, :mod:`talking_faces.evaluation.landmark_cache`)
    reference_cache: ReferenceLandmarkCache | None = None


# ----------------------------------------------------------------------------- experts
def _missing_expert(kind: str, prep: str, flag: str) -> UserError:
    from talking_faces.experts import TRAIN_COMMANDS

    label = _EXPERT_LABELS[kind]
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
    from talking_faces.experts import expert_path

    if not storage.is_remote(prep):
        path = expert_path(prep, name)
        return (path if path.is_file() else None), str(path)
    return (
        storage.fetch_dataset_file(prep, EXPERTS_DIR, f"{name}.ckpt"),
        storage.join(prep, EXPERTS_DIR, f"{name}.ckpt"),
    )


def load_dataset_expert(name: str, prep: str, given: str | None) -> tuple[Any, Path, dict]:
    """The expert ``name`` from the file ``given`` (``--syncnet`` / ``--landmarks-model``), else
    the prepared dataset's: ``(expert, local file, its record for the results: kind, path,
    sha256)``.

    Raises:
        UserError: ``given`` does not exist, or the dataset has no such expert (with the command
            that trains it), or the file holds another network.
    """
    from talking_faces.registry import load_expert

    if given:
        path = Path(given)
        where = str(path)
        if not path.is_file():
            raise UserError(f"{_EXPERT_LABELS[name]} expert {path} does not exist")
    else:
        found, where = dataset_expert(prep, name)
        if found is None:
            raise _missing_expert(name, prep, _EXPERT_FLAGS[name])
        path = found
    expert, digest = load_expert(path, name)
    return expert, path, {"kind": "expert", "path": where, "sha256": digest}


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [round(float(v), 6) for v in value]
    return value


def _check_lse_inputs(fields: dict[str, Any], settings: dict[str, Any], path: Path) -> None:
    """Refuse a protocol whose LSE inputs differ from those the SyncNet expert was trained on."""
    for key in LSE_INPUT_KEYS:
        if key in fields and _norm(fields[key]) != _norm(settings[key]):
            raise UserError(
                f"protocol {fields['name']!r} scores LSE with {key}={fields[key]!r} but the "
                f"SyncNet expert {path} was trained with {settings[key]!r}; retrain it with "
                f"model.{_EXPERT_FIELD[key]}=... or drop {key} from the protocol"
            )


def _syncnet(
    choice: str,
    fields: dict[str, Any],
    prep: str,
    given: str | None,
    public: str | None,
    device: str | torch.device,
) -> tuple[nn.Module | None, dict[str, Any] | None, dict[str, Any]]:
    """``(network or None, its experts record or None, its resolved description)``; an expert
    writes the LSE inputs it was trained with into ``fields``."""
    if choice == "expert":
        expert, path, record = load_dataset_expert("syncnet", prep, given)
        settings = expert.lse_settings()
        _check_lse_inputs(fields, settings, path)
        fields.update(settings)
        described = {
            "kind": "expert",
            "sha256": record["sha256"],
            "input_size": expert.config.input_size,
        }
        return expert.net.to(device).eval(), record, described
    if choice == "public":
        from talking_faces.nn.syncnet import load_syncnet, resolve_syncnet_path

        path = resolve_syncnet_path(public)
        net = load_syncnet(path).to(device).eval()
        digest = sha256_file(path)
        record = {"kind": "public", "path": str(path), "sha256": digest}
        return net, record, {"kind": "public", "sha256": digest, "input_size": 224}
    return None, None, {"kind": "none"}


def _landmarks(
    choice: str, prep: str, given: str | None, device: str | torch.device, box: str = "detect"
) -> tuple[Callable[[Tensor], Tensor] | None, dict[str, Any] | None, dict[str, Any]]:
    """``(landmark model or None, its experts record or None, its resolved description)``;
    ``box``: the protocol's ``dlib_box``."""
    if choice == "dlib":
        from talking_faces.metrics.face_models import DlibLandmarkModel

        dlib_model = DlibLandmarkModel(box=box)
        described = dlib_model.describe()
        return dlib_model, dict(described), described
    if choice != "expert":
        return None, None, {"kind": "none"}
    expert, _, record = load_dataset_expert("landmarks", prep, given)
    model = ExpertLandmarkModel(expert.to(device).eval())
    return model, record, {"kind": "expert", "sha256": record["sha256"]}


def _identity(
    choice: str, arcface: str | None, device: str | torch.device, box: str = "detect"
) -> tuple[Callable[[Tensor], Tensor] | None, dict[str, Any]]:
    """``(face embedder or None, its description: kind, sha256, weights)``; ``box``: the
    protocol's ``dlib_box``."""
    if choice == "dlib":
        from talking_faces.metrics.face_models import DlibFaceEmbedder

        dlib_model = DlibFaceEmbedder(box=box)
        return dlib_model, dlib_model.describe()
    if choice == "arcface":
        from talking_faces.metrics.face_models import ArcFaceEmbedder

        arc = ArcFaceEmbedder(arcface, box=box)
        arc.net.to(device)
        return arc, arc.describe()
    return None, {"kind": "none"}


def _lpips_record(model: nn.Module) -> dict[str, Any]:
    return {
        "kind": "lpips-alex",
        "path": getattr(model, "weights_path", None),
        "sha256": getattr(model, "weights_sha256", None),
        "source": getattr(model, "weights_source", None),
    }


# ----------------------------------------------------------------------------- scorers
def build_scorers(
    protocol_name: str,
    prep: str,
    syncnet_path: str | None = None,
    landmarks_path: str | None = None,
    syncnet_public: str | None = None,
    device: str | torch.device = "cpu",
    arcface: str | None = None,
) -> Scorers:
    """Load the protocol and the networks it needs; resolve it into the dict results record.

    Raises:
        UserError: unknown protocol keys or values, a missing expert (with the command that
            trains it), an expert trained for other LSE inputs than the protocol names.
        MissingWeightsError: a real network's file is missing (one line naming where it goes or
            the command that fetches it).
    """
    from talking_faces.metrics import Protocol
    from talking_faces.metrics.identity import CSIM_KEYS

    pf = split_protocol(load_protocol_file(protocol_name))
    syncnet, syncnet_record, syncnet_described = _syncnet(
        pf.syncnet, pf.fields, prep, syncnet_path, syncnet_public, device
    )
    landmark_model, landmarks_record, landmarks_described = _landmarks(
        pf.landmarks, prep, landmarks_path, device, pf.dlib_box
    )
    identity_model, identity_described = _identity(pf.identity, arcface, device, pf.dlib_box)
    fid = None
    if pf.fid:
        from talking_faces.metrics.fid import VideoFID

        fid = VideoFID(frame_stride=pf.fid_frame_stride)
    lpips_model = load_lpips_for(pf.name) if pf.lpips else None
    reference_cache = None
    if landmark_model is not None and pf.lmd_reference == "expert":
        from talking_faces.evaluation.landmark_cache import ReferenceLandmarkCache

        batch_size = getattr(landmark_model, "batch_size", None)
        reference_cache = ReferenceLandmarkCache.for_model(landmarks_record, batch_size, device)
    experts = {
        name: record
        for name, record in (
            ("syncnet", syncnet_record),
            ("landmarks", landmarks_record),
            ("identity", identity_described if identity_model is not None else None),
            ("lpips", _lpips_record(lpips_model) if lpips_model is not None else None),
            ("fid", fid.describe() if fid is not None else None),
        )
        if record is not None
    }
    protocol = Protocol.from_dict(pf.fields)
    resolved = {
        **protocol.to_dict(),
        "lpips": pf.lpips,
        # no LMD without a landmark model: no reference to record
        "lmd_reference": pf.lmd_reference if landmark_model is not None else None,
        "syncnet": syncnet_described,
        "landmarks": landmarks_described,
    }
    # absent otherwise, so older protocols keep their sha256
    if identity_model is not None:
        resolved["identity"] = {k: identity_described[k] for k in ("kind", "sha256")}
        if "box" in identity_described:  # dlib_box: aligned (detect keeps older sha256s)
            resolved["identity"]["box"] = identity_described["box"]
        if pf.identity_frame_stride != 1:
            resolved["identity"]["frame_stride"] = pf.identity_frame_stride
    if pf.naturalness:
        resolved["naturalness"] = {"metrics": list(NATURALNESS_KEYS), "silence": SILENCE_SOURCE}
    if pf.regions:  # absent otherwise, so older protocols keep their sha256
        from talking_faces.metrics.regions import describe as describe_regions

        resolved["regions"] = describe_regions()
    if fid is not None:
        described = fid.describe()
        resolved["fid"] = {k: described[k] for k in ("sha256", "feature", "frame_stride")}
    resolved[PRIMARY_METRIC_KEY] = primary_metric(pf.name, pf.primary, resolved)
    return Scorers(
        protocol=protocol,
        resolved=resolved,
        syncnet=syncnet,
        landmark_model=landmark_model,
        lmd_reference=pf.lmd_reference,
        lpips=pf.lpips,
        experts=experts,
        identity_model=identity_model,
        identity_key=CSIM_KEYS.get(pf.identity, "csim_dlib"),
        identity_frame_stride=pf.identity_frame_stride,
        lpips_model=lpips_model,
        naturalness=pf.naturalness,
        regions=pf.regions,
        fid=fid,
        reference_cache=reference_cache,
    )


def load_lpips_for(protocol: str) -> nn.Module:
    """torchvision's AlexNet LPIPS, for protocol ``protocol`` (named in the error without it)."""
    from talking_faces.errors import MissingWeightsError
    from talking_faces.metrics import load_lpips

    try:
        return load_lpips()
    except MissingWeightsError as exc:
        raise MissingWeightsError(
            f"{exc} (protocol {protocol!r} scores LPIPS; a protocol without it, e.g. "
            "--protocol synthetic, needs no weights)"
        ) from None


def build_suite(
    scorers: Scorers, protocol: str, num_samples: int, device: str
) -> tuple[MetricSuite, SampleDiversity | None]:
    """The metric suite of ``scorers`` on ``device`` and, with ``num_samples`` > 1, the sample
    diversity metric (LPIPS loaded once for both when the protocol scores it)."""
    from talking_faces.metrics import MetricSuite, SampleDiversity

    lpips_model = scorers.lpips_model
    if scorers.lpips and lpips_model is None:
        lpips_model = load_lpips_for(protocol)
    # the dataset's expert (ScalableSyncNet) has the public SyncNet's interface (forward_lip,
    # forward_aud), which is all LSE runs
    syncnet = cast("SyncNet | None", scorers.syncnet)
    suite = MetricSuite(
        scorers.protocol,
        syncnet=syncnet,
        landmark_model=scorers.landmark_model,
        lpips=scorers.lpips,
        lpips_model=lpips_model,
        identity_model=scorers.identity_model,
        identity_key=scorers.identity_key,
        identity_frame_stride=scorers.identity_frame_stride,
        naturalness=scorers.naturalness,
        fid=scorers.fid,
        regions=scorers.regions,
    ).to(device)
    diversity = (
        SampleDiversity(lpips_model, num_samples=num_samples).to(device)
        if num_samples > 1
        else None
    )
    return suite, diversity


__all__ = [
    "ExpertLandmarkModel",
    "Scorers",
    "build_scorers",
    "build_suite",
    "dataset_expert",
    "load_dataset_expert",
    "load_lpips_for",
]

"""Protocol files: what one evaluation measures, read and checked before any network is loaded.

``--protocol NAME|PATH`` -> **protocol_path** (``experiments/protocols/NAME.yaml``, found by
:func:`talking_faces.config.files.named_file`) -> **load_protocol_file** -> **split_protocol**
(the :class:`talking_faces.metrics.Protocol` fields apart from the scorer choices) ->
:func:`talking_faces.evaluation.scorers.build_scorers` -> the resolved protocol of the results

A protocol file holds the fields of :class:`talking_faces.metrics.Protocol` plus
:data:`SCORER_KEYS` (which networks score: ``syncnet``, ``landmarks``, ``lmd_reference``,
``lpips``, ``identity``, ``naturalness``, ``regions``, ``fid``, ``fid_frame_stride``,
``dlib_box``, ``identity_frame_stride``) and
``primary_metric`` (what ranks its leaderboard table, :func:`primary_metric`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from omegaconf import OmegaConf

from talking_faces.config.files import named_file
from talking_faces.errors import UserError
from talking_faces.names import DLIB_BOX_MODES, RANKING_FALLBACK

#: keys of a protocol file that choose the scoring networks (the rest are Protocol fields)
SCORER_KEYS = (
    "syncnet",
    "landmarks",
    "lmd_reference",
    "lpips",
    "identity",
    "naturalness",
    "regions",
    "fid",
    "fid_frame_stride",
    "dlib_box",
    "identity_frame_stride",
)
SYNCNET_CHOICES = ("expert", "public", "none")
#: expert: the dataset's trained landmark expert; dlib: dlib's 68 points as Chen et al. run them
LANDMARK_CHOICES = ("expert", "dlib", "none")
#: expert: the protocol's landmark model (expert or dlib) on the real frames; dataset: the
#: landmarks stored with the prepared dataset
LMD_REFERENCES = ("expert", "dataset")
#: the face embedding of identity similarity: dlib's (csim_dlib), ArcFace's (csim_arcface), none
IDENTITY_CHOICES = ("dlib", "arcface", "none")
#: the key naming the metric that ranks a leaderboard group under the protocol
PRIMARY_METRIC_KEY = "primary_metric"
#: Protocol fields that a SyncNet expert fixes (it was trained on those inputs)
LSE_INPUT_KEYS = ("lse_mode", "lse_crop_box", "lse_channel_order")


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
    return cast(dict[str, Any], data)


@dataclass
class ProtocolFile:
    """A protocol file split into its parts (:func:`split_protocol`)."""

    #: the :class:`talking_faces.metrics.Protocol` fields (``name`` included)
    fields: dict[str, Any]
    #: ``expert``, ``public`` or ``none``
    syncnet: str
    #: ``expert`` or ``none``
    landmarks: str
    #: ``expert`` or ``dataset``
    lmd_reference: str
    lpips: bool
    #: ``dlib``, ``arcface`` or ``none``
    identity: str
    #: score the landmark dynamics and silent-lip stability (needs a landmark model)
    naturalness: bool
    #: FID on frames (every ``fid_frame_stride``-th frame of each clip)
    fid: bool
    fid_frame_stride: int
    #: the file's ``primary_metric`` (None: the default, see :func:`primary_metric`)
    primary: Any
    #: score the region metrics (face outside the mouth, eyes and brows, teeth)
    regions: bool = False
    #: ``detect`` or ``aligned`` (:data:`talking_faces.names.DLIB_BOX_MODES`): dlib's box in each
    #: frame
    dlib_box: str = "detect"
    #: identity similarity on every k-th frame of each clip
    identity_frame_stride: int = 1

    @property
    def name(self) -> str:
        return str(self.fields["name"])


def split_protocol(raw: dict[str, Any]) -> ProtocolFile:
    """Check the keys and scorer choices of a raw protocol mapping and split them from its
    :class:`talking_faces.metrics.Protocol` fields.

    Raises:
        UserError: an unknown key, or a scorer choice that is not one of its allowed values.
    """
    from talking_faces.metrics import Protocol

    raw = dict(raw)
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
        "identity": str(scorer.get("identity", "none")),
        "dlib_box": str(scorer.get("dlib_box", "detect")),
    }
    for key, allowed in (
        ("dlib_box", DLIB_BOX_MODES),
        ("syncnet", SYNCNET_CHOICES),
        ("landmarks", LANDMARK_CHOICES),
        ("lmd_reference", LMD_REFERENCES),
        ("identity", IDENTITY_CHOICES),
    ):
        if choice[key] not in allowed:
            raise UserError(
                f"protocol {raw['name']!r}: {key} must be one of {', '.join(allowed)}, "
                f"got {choice[key]!r}"
            )
    stride = scorer.get("identity_frame_stride", 1)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise UserError(
            f"protocol {raw['name']!r}: identity_frame_stride must be a whole number of 1 or "
            f"more, got {stride!r}"
        )
    naturalness = bool(scorer.get("naturalness", False))
    if naturalness and choice["landmarks"] == "none":
        raise UserError(
            f"protocol {raw['name']!r}: naturalness needs a landmark model; set landmarks: "
            "expert or dlib, or naturalness: false"
        )
    return ProtocolFile(
        fields=raw,
        lpips=bool(scorer.get("lpips", False)),
        naturalness=naturalness,
        regions=bool(scorer.get("regions", False)),
        fid=bool(scorer.get("fid", False)),
        fid_frame_stride=int(scorer.get("fid_frame_stride", 1)),
        identity_frame_stride=stride,
        primary=primary,
        **choice,
    )


def scored_metrics(resolved: dict[str, Any]) -> list[str]:
    """The ranking metrics a resolved protocol scores (those with a direction)."""
    metrics = ["psnr", "ssim"]
    metrics += ["lpips"] if resolved.get("lpips") else []
    metrics += ["cpbd"] if resolved.get("cpbd") else []
    identity = resolved.get("identity", {"kind": "none"})["kind"]
    metrics += [f"csim_{identity}"] if identity != "none" else []
    metrics += ["silent_lip_mad"] if resolved.get("naturalness") else []
    regions = ["face_l1_outside_mouth", "eyes_l1", "teeth_visible"]
    metrics += regions if resolved.get("regions") else []
    metrics += ["fid"] if resolved.get("fid") else []
    metrics += ["lmd"] if resolved["landmarks"]["kind"] != "none" else []
    metrics += ["lse_d", "lse_c"] if resolved["syncnet"]["kind"] != "none" else []
    return metrics


def primary_metric(name: str, given: Any, resolved: dict[str, Any]) -> str:
    """The protocol's primary metric (what ranks its leaderboard table): ``primary_metric`` of
    the file, else the first of :data:`talking_faces.names.RANKING_FALLBACK` (``lse_c`` when it
    scores lip sync, else ``lmd``, else ``ssim``) that it scores.

    Raises:
        UserError: a metric the protocol does not score.
    """
    scored = scored_metrics(resolved)
    if given is None:
        return next(m for m in RANKING_FALLBACK if m in scored)
    if str(given) not in scored:
        raise UserError(
            f"protocol {name!r}: primary_metric {given!r} is not scored under it; choose one of "
            f"{', '.join(scored)}"
        )
    return str(given)


__all__ = [
    "IDENTITY_CHOICES",
    "LANDMARK_CHOICES",
    "LSE_INPUT_KEYS",
    "PRIMARY_METRIC_KEY",
    "SCORER_KEYS",
    "ProtocolFile",
    "load_protocol_file",
    "primary_metric",
    "protocol_path",
    "scored_metrics",
    "split_protocol",
]

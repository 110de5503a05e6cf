"""One source for the names and constants that several stages share (torch-free, import-light).

Every module that needs one of these imports it from here, so the stages cannot drift apart:
the prepared data's timing (fps, sample rate, samples per frame), the reference rows, every metric
key with its direction, the run folder's and the prepared dataset's fixed paths.
"""

from __future__ import annotations

from types import MappingProxyType

# ----------------------------------------------------------------------------- timing
#: frames per second of every prepared clip
FPS = 25
#: audio sample rate of every prepared clip (mono)
SAMPLE_RATE = 16_000
#: audio samples under one video frame (16000 / 25)
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
#: audio feature rows (MFCC / log-mel at 100 Hz) per video frame
FEATURES_PER_FRAME = 4

# ----------------------------------------------------------------------------- reference rows
GROUND_TRUTH = "ground-truth"
STATIC = "static"
SHUFFLED = "shuffled"
#: the reference rows `evaluate --baseline` scores, in the order a leaderboard lists them
BASELINES: tuple[str, ...] = (GROUND_TRUTH, STATIC, SHUFFLED)

# ----------------------------------------------------------------------------- metrics
#: direction of every key the metric suite can return (None: not a score, e.g. a count)
HIGHER_IS_BETTER: MappingProxyType[str, bool | None] = MappingProxyType(
    {
        "psnr": True,
        "ssim": True,
        "lpips": False,
        # FID over the frames (metrics/fid.py) and how many frames (per side) and clips it saw:
        # FID is biased upwards at small sample counts
        "fid": False,
        "fid_frames": None,
        "fid_clips": None,
        "cpbd": True,
        "lmd": False,
        "lmd_frames_scored": None,
        "lmd_frames_failed": None,
        "lmd_clips_unscored": None,
        "lse_d": False,
        "lse_c": True,
        "lse_offset": None,
        "lse_abs_offset": False,
        "csim_dlib": True,
        "csim_arcface": True,
        "csim_frames_scored": None,
        "csim_frames_failed": None,
        "csim_clips_unscored": None,
        "diversity_l1": True,
        "diversity_lpips": True,
        "diversity_mouth_share": None,
        "diversity_mouth_area": None,
        "diversity_lse_c_spread": False,
        "diversity_lse_c_spread_max": False,
        "diversity_lse_c_sample_spread": False,
        # naturalness and silent-lip stability (metrics/naturalness.py): the raw dynamics have
        # no direction (their target is the ground truth's value); the *_norm keys are THEval's
        # closeness to the ground-truth row, 1 - |m - m_GT| / |m_GT|, and final_score their mean
        "lip_dynamics": None,
        "head_motion_dynamics": None,
        "eyebrow_dynamics": None,
        "silent_lip_mad": False,
        "silent_lip_clips_scored": None,
        "lip_dynamics_norm": True,
        "head_motion_dynamics_norm": True,
        "eyebrow_dynamics_norm": True,
        "silent_lip_mad_norm": True,
        "final_score": True,
        # region metrics (metrics/regions.py), in regions of the real frames' landmarks: the
        # error over the face outside the mouth and over the eyes and brows, the share of the
        # real frames showing teeth in which the generated ones do, and how many clips had any
        "face_l1_outside_mouth": False,
        "eyes_l1": False,
        "teeth_visible": True,
        "teeth_clips_scored": None,
        "clips": None,
    }
)
#: the metrics a leaderboard shows first, in this order (when the results have them)
HEADLINE_METRICS: tuple[str, ...] = (
    "psnr",
    "ssim",
    "lpips",
    "csim_arcface",
    "csim_dlib",
    "lmd",
    "lse_d",
    "lse_c",
    "cpbd",
    "diversity_l1",
)
#: the metric that ranks a group when the protocol names none, first present wins
RANKING_FALLBACK: tuple[str, ...] = ("lse_c", "lmd", "ssim")

# ----------------------------------------------------------------------------- run folder
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
RUN_CONFIG_FILE = "config.yaml"
METRICS_CSV = "metrics.csv"

# ----------------------------------------------------------------------------- prepared dataset
META_FILE = "meta.json"
MANIFEST_FILE = "manifest.jsonl"
PAIRS_FILE = "pairs.json"
SHARDS_DIR = "shards"
EXPERTS_DIR = "experts"
#: the evaluation experts, by their model.name
EXPERT_NAMES: tuple[str, ...] = ("syncnet", "landmarks")


def last_checkpoint(run_dir: str) -> str:
    """``RUN/checkpoints/last.ckpt`` of a run folder, as a path string."""
    return f"{run_dir.rstrip('/')}/{CHECKPOINTS_DIR}/{LAST_CHECKPOINT}"


def expert_file(prepared: str, name: str) -> str:
    """``PREP/experts/<name>.ckpt`` of a prepared dataset (a folder or an ``s3://`` prefix)."""
    return f"{prepared.rstrip('/')}/{EXPERTS_DIR}/{name}.ckpt"


#: where dlib's shape predictor reads each frame (protocol key ``dlib_box``): the detector's box
#: of that frame (Chen et al.), or, on aligned crops, the first found box for every frame of a
#: batch
DLIB_BOX_MODES = ("detect", "aligned")

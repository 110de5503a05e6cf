"""Metrics: torchmetrics ``Metric`` classes with their functional forms.

Generated clips -> :class:`MetricSuite` (one :class:`Protocol`) -> PSNR / SSIM / LPIPS
(:mod:`.image`), mouth LMD (:mod:`.landmarks`), LSE-D / LSE-C / AV offset with SyncNet
(:mod:`.sync`), CPBD sharpness (:mod:`.sharpness`), sample diversity (:mod:`.diversity`), lip,
head-motion and eyebrow dynamics and silent-lip stability from landmarks (:mod:`.naturalness`)
and the face outside the mouth, the eyes and brows and the teeth against the real frames, in
regions of their landmarks (:mod:`.regions`) -> results JSON. Every state is added with a
reduction, so the scores are right under DDP; every class sets ``higher_is_better``.
"""

from talking_faces.metrics.diversity import SampleDiversity, mouth_mask, sample_diversity
from talking_faces.metrics.image import (
    VideoLPIPS,
    VideoPSNR,
    VideoSSIM,
    load_lpips,
    video_lpips,
    video_psnr,
    video_ssim,
)
from talking_faces.metrics.landmarks import LandmarkDistance, landmark_distance
from talking_faces.metrics.naturalness import (
    EyebrowDynamics,
    HeadMotionDynamics,
    LipDynamics,
    SilentLipStability,
    eyebrow_dynamics,
    final_score,
    gt_normalised,
    head_motion_dynamics,
    lip_dynamics,
    silence_mask,
    silent_lip_mad,
)
from talking_faces.metrics.regions import (
    EyesL1,
    FaceL1OutsideMouth,
    Regions,
    TeethVisible,
    eyes_l1,
    face_l1_outside_mouth,
    teeth_visible,
)
from talking_faces.metrics.sharpness import VideoCPBD, cpbd, video_cpbd
from talking_faces.metrics.suite import HIGHER_IS_BETTER, MetricSuite, Protocol
from talking_faces.metrics.sync import (
    LipSyncError,
    SyncConfidence,
    SyncDistance,
    lip_sync_error,
    lse_from_distances,
    sync_distances,
    sync_windows,
    syncnet_mfcc,
)

__all__ = [
    "EyebrowDynamics",
    "EyesL1",
    "FaceL1OutsideMouth",
    "HIGHER_IS_BETTER",
    "HeadMotionDynamics",
    "LandmarkDistance",
    "LipDynamics",
    "LipSyncError",
    "MetricSuite",
    "Protocol",
    "Regions",
    "SampleDiversity",
    "SilentLipStability",
    "SyncConfidence",
    "SyncDistance",
    "TeethVisible",
    "VideoCPBD",
    "VideoLPIPS",
    "VideoPSNR",
    "VideoSSIM",
    "cpbd",
    "eyebrow_dynamics",
    "eyes_l1",
    "face_l1_outside_mouth",
    "final_score",
    "gt_normalised",
    "head_motion_dynamics",
    "landmark_distance",
    "lip_dynamics",
    "lip_sync_error",
    "load_lpips",
    "lse_from_distances",
    "mouth_mask",
    "sample_diversity",
    "silence_mask",
    "silent_lip_mad",
    "sync_distances",
    "sync_windows",
    "syncnet_mfcc",
    "teeth_visible",
    "video_cpbd",
    "video_lpips",
    "video_psnr",
    "video_ssim",
]

"""Prepared dataset -> batches: ``TalkingFaceDataModule`` and the ``Batch`` contract.

prepare -> prepared dataset -> **talking_faces.data** -> TalkingFaceModule
"""

from talking_faces.data.batch import BATCH_KEYS, Batch, collate_batch
from talking_faces.data.datamodule import TalkingFaceDataModule
from talking_faces.data.dataset import ClipWindowDataset, PreparedDataset, TestPairDataset

__all__ = [
    "BATCH_KEYS",
    "Batch",
    "ClipWindowDataset",
    "PreparedDataset",
    "TalkingFaceDataModule",
    "TestPairDataset",
    "collate_batch",
]

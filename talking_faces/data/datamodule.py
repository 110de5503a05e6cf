"""``TalkingFaceDataModule``: a prepared dataset as Lightning dataloaders of :class:`Batch`.

prepared dataset -> **TalkingFaceDataModule** (ClipWindowDataset per split, StreamingDataLoader,
collate_batch) -> Batch -> TalkingFaceModule

The splits were fixed by ``prepare`` (manifest.jsonl); nothing is drawn here except windows and
identity frames, with the seeds documented in :mod:`talking_faces.data.dataset`. Loaders are
LitData ``StreamingDataLoader``: it passes the epoch to the dataset (new random training windows
and shuffle order each epoch) and, under DDP, each rank streams its own part of the split.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import lightning as L
from litdata import StreamingDataLoader

from talking_faces.data.batch import Batch, collate_batch, images_to_float
from talking_faces.data.dataset import (
    ClipWindowDataset,
    PreparedDataset,
    TestPairDataset,
    WindowConfig,
    check_audio_feature,
    select_features,
)
from talking_faces.errors import UserError


class BatchLoader(StreamingDataLoader):
    """LitData's loader yielding :class:`Batch`: workers collate frames as uint8 (a quarter of
    the bytes through shared memory; measured 1.5x more frames per worker CPU-second at T=5) and
    they become float32 in [0, 1] here, in the process that consumes the batch."""

    def __iter__(self) -> Iterator[Batch]:
        for batch in super().__iter__():
            yield images_to_float(batch)


class TalkingFaceDataModule(L.LightningDataModule):
    """Batches of windows from a prepared dataset (``talking-faces prepare``).

    Args:
        root: prepared dataset folder, or a URL LitData streams from (``s3://...``).
        num_frames: T frames per window, or ``"clip"`` for whole clips (needs ``batch_size=1``
            unless all clips have one length, as in GRID and LRW).
        batch_size: windows per batch.
        num_workers: DataLoader worker processes (0 = in the main process).
        identity: ``random`` (a frame of the same clip outside the window), ``first`` (frame 0
            of the clip), ``other-clip`` (a frame of another clip of the same speaker) or
            ``first-frame`` (frame 0 of the clip, every window starting at it).
        audio_feature: ``mfcc`` (13, c0 = log energy), ``logmel`` or ``mfcc_davs`` (the davs
            authors' MATLAB MFCC, 13; datasets prepared since it was added).
        audio_window: W rows at 100 Hz per frame, centred on the frame's centre row 4t+2.
        audio_pad: ``edge`` or ``zero`` for rows outside the clip, or ``zero_waveform`` (the
            ldm authors': MFCC of the waveform zero-padded by 1,965 samples; ``mfcc`` only).
        drop_c0: drop MFCC c0 (F = 12; ``mfcc`` and ``mfcc_davs``).
        seed: seeds training windows, identity draws and the shuffle order.
        train_split, val_split, test_split: split names of the manifest.
        pin_memory: DataLoader ``pin_memory``.
        shuffle_train: shuffle the training clips each epoch.
        cache_dir: where LitData caches chunks streamed from a URL (its default otherwise).

    Batch: see :class:`talking_faces.data.batch.Batch`.
    """

    def __init__(
        self,
        root: str,
        num_frames: int | str = 5,
        batch_size: int = 8,
        num_workers: int = 0,
        identity: str = "random",
        audio_feature: str = "mfcc",
        audio_window: int = 28,
        audio_pad: str = "edge",
        drop_c0: bool = True,
        seed: int = 0,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        pin_memory: bool = False,
        shuffle_train: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.root = str(root)
        self.window = WindowConfig(
            num_frames=num_frames,
            identity=identity,
            audio_feature=audio_feature,
            audio_window=audio_window,
            audio_pad=audio_pad,
            drop_c0=drop_c0,
            seed=seed,
        )
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise UserError(f"num_workers must be 0 or more, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.pin_memory = pin_memory
        self.shuffle_train = shuffle_train
        self.cache_dir = cache_dir
        self._prepared: PreparedDataset | None = None
        self._datasets: dict[str, ClipWindowDataset] = {}

    # ------------------------------------------------------------------ dataset facts
    @property
    def prepared(self) -> PreparedDataset:
        if self._prepared is None:
            self._prepared = PreparedDataset.load(self.root)
        return self._prepared

    @property
    def meta(self) -> dict[str, Any]:
        """The prepared dataset's ``meta.json``."""
        return self.prepared.meta

    @property
    def speakers(self) -> list[str]:
        return list(self.meta["speakers"])

    @property
    def words(self) -> list[str]:
        return list(self.meta["words"])

    @property
    def image_size(self) -> int:
        return int(self.meta["size"])

    @property
    def audio_dim(self) -> int:
        """F, coefficients per audio row of the configured feature."""
        check_audio_feature(self.prepared, self.window)
        w = self.window
        for split in ("train", "val", "test"):
            if self.prepared.shard_dir(split):
                raw = self._raw_dataset(split)[0]
                return int(select_features(raw, w.audio_feature, w.drop_c0, w.audio_pad).shape[1])
        raise UserError(f"{self.root} has no ok clips")

    def _raw_dataset(self, split: str) -> Any:
        from litdata import StreamingDataset

        return StreamingDataset(
            self.prepared.shard_dir(split), cache_dir=self.cache_dir, batch_decode=0
        )

    # ------------------------------------------------------------------ datasets
    def setup(self, stage: str | None = None) -> None:
        """Read meta and manifest; datasets are created on first use of each loader."""
        _ = self.prepared

    def dataset(self, stage: str) -> ClipWindowDataset:
        """The window dataset of ``stage`` (``train``, ``val`` or ``test``)."""
        if stage not in self.splits:
            raise ValueError(f"stage must be train, val or test, got {stage!r}")
        if stage not in self._datasets:
            split = self.splits[stage]
            ds = ClipWindowDataset(
                self.prepared,
                split,
                self.window,
                train=stage == "train",
                shuffle=self.shuffle_train if stage == "train" else False,
                cache_dir=self.cache_dir,
            )
            if self.window.num_frames != "clip":
                rows = self.prepared.rows(split)
                keep = [r["index"] for r in rows if r["frames"] >= self.window.num_frames]
                if not keep:
                    longest = max(r["frames"] for r in rows)
                    raise UserError(
                        f"num_frames={self.window.num_frames} is longer than every clip of split "
                        f"{split!r} (longest {longest} frames); use a smaller num_frames"
                    )
                if len(keep) < len(rows):
                    excluded = [r["clip_id"] for r in rows if r["frames"] < self.window.num_frames]
                    ds = ds.subset(keep)
                    ds.excluded = excluded
            self._datasets[stage] = ds
        return self._datasets[stage]

    def _loader(self, stage: str) -> BatchLoader:
        return BatchLoader(
            self.dataset(stage),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=functools.partial(collate_batch, float_images=False),
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> BatchLoader:
        return self._loader("train")

    def val_dataloader(self) -> BatchLoader:
        return self._loader("val")

    def test_dataloader(self) -> BatchLoader:
        return self._loader("test")

    def test_pairs(self) -> TestPairDataset:
        """The fixed evaluation pairs (``pairs.json``) as a map-style dataset; see
        :class:`~talking_faces.data.dataset.TestPairDataset`."""
        return TestPairDataset(self.prepared, self.window, cache_dir=self.cache_dir)

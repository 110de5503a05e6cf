"""The on-disk format of a prepared dataset, shared by its writer (``data.prepare.writer``) and
its readers (``data.dataset``).

Layout of a prepared dataset ``OUT/`` (``pipeline.prepare`` drives the writing order)::

    OUT/meta.json         every parameter that shaped the data; written last, so its presence
                          means the dataset is complete
    OUT/manifest.jsonl    one row per source clip, ok or skipped, with its split
    OUT/pairs.json        the fixed (identity clip, audio clip) pairs of the test split
    OUT/shards/<split>/   one LitData dataset per split (``index.json`` + ``chunk-*.bin``); the
                          i-th sample is the manifest's ok row of that split with ``"index": i``
                          (ok rows of a split in clip_id order)
    OUT/.work/            only while preparing: ``config.json``, ``clips/<key>.npz`` (one finished
                          clip each, written atomically) and ``status.jsonl`` (skipped clips);
                          deleted once ``meta.json`` is written

One shard sample (a dict; LitData needs the same keys and leaf types in every sample)::

    clip_id          str
    index            int     position of the sample in its split (= manifest "index")
    speaker          int     index into meta["speakers"]; -1 when the source names no speaker
                             (LRW: each clip is its own identity)
    word             int     index into meta["words"] of the clip's word (LRW), -1 when none
    num_frames       int     T
    frames           bytes   T JPEG images (RGB, size x size) packed by :func:`pack_jpeg_frames`
    waveform         float32 (T*640,)   16 kHz mono in [-1, 1]
    mfcc             float32 (4T, 13)   100 Hz, c0 = log energy
    logmel           float32 (4T, n_mels)
    mfcc_davs        float32 (4T, 13)   100 Hz, the davs authors' MATLAB MFCC (c0 = DCT term 0);
                                        only in datasets prepared since it was added
    mfcc_wavepad     float32 (4T+24, 13) ``mfcc`` of the waveform with WAVEPAD_SAMPLES zeros on
                                        each side (the ldm authors'); same datasets only
    landmarks        float32 (T, 68, 2) crop pixels
    landmarks_valid  bool    (T,)
    words            int32   (n, 3)     spoken words (start frame, end frame exclusive,
                                        index into meta["words"]); silence (sil/sp) left out

The frames are one ``bytes`` leaf rather than a list of ``bytes`` because LitData requires every
sample to have the same tree shape, and clips differ in length; the packing is the one LitData's
``JpegArray`` serializer uses (uint32 count, uint32 sizes, concatenated JPEG files), stored
undecoded so that a reader decodes only the frames of its window.

Shards are written in-process with LitData's ``BinaryWriter`` (the writer ``litdata.optimize``
runs in each of its workers) rather than through ``litdata.optimize``: the expensive per-clip work
has already run in prepare's own worker pool (which also makes prepare resumable), so shard
writing is a sequential copy of finished bytes; ``optimize`` would add a process spawn of about
4-8 s per call on a small machine (measured for 20 tiny items) and would not keep the manifest's
sample order with more than one worker. The result is a standard LitData dataset, read by
``litdata.StreamingDataset`` from local disk or object storage.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

#: version of the prepared-dataset layout described above
FORMAT_VERSION = 1
SHARD_FORMAT = "litdata"
#: zeros the ldm authors put on each side of the waveform before their MFCC (``mfcc_wavepad``):
#: ry85/Stochastic-Talking-Face-Generation-Using-Latent-Distribution-Matching, data_loader.py
WAVEPAD_SAMPLES = 1965
#: whole 100 Hz rows in WAVEPAD_SAMPLES: row ``r + WAVEPAD_ROWS`` of ``mfcc_wavepad`` starts
#: ``WAVEPAD_SAMPLES - 160 * WAVEPAD_ROWS`` (45) samples before row ``r`` of ``mfcc``
WAVEPAD_ROWS = WAVEPAD_SAMPLES // 160
#: alignment tokens that are not words
SILENCE_TOKENS: frozenset[str] = frozenset({"sil", "sp", "SIL", "SP"})


# ---------------------------------------------------------------------------- frame packing


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """One RGB frame ``(H, W, 3) uint8`` as JPEG bytes (PIL, 4:2:0 chroma)."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def pack_jpeg_frames(frames: np.ndarray, quality: int) -> bytes:
    """Pack ``(T, H, W, 3) uint8`` frames as ``uint32 T | uint32 sizes[T] | JPEG files``."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    jpegs = [encode_jpeg(f, quality) for f in frames]
    header = np.array([len(jpegs), *(len(j) for j in jpegs)], dtype="<u4").tobytes()
    return b"".join([header, *jpegs])


def jpeg_offsets(blob: bytes | memoryview) -> np.ndarray:
    """Byte offsets ``(T + 1,) int64`` of the JPEG files in a packed blob: frame t is
    ``blob[off[t]:off[t + 1]]``."""
    n = int(np.frombuffer(blob, dtype="<u4", count=1)[0])
    sizes = np.frombuffer(blob, dtype="<u4", count=n, offset=4).astype(np.int64)
    off = np.empty(n + 1, dtype=np.int64)
    off[0] = 4 * (n + 1)
    np.cumsum(sizes, out=off[1:])
    off[1:] += off[0]
    if off[-1] != len(blob):
        raise ValueError(f"packed frames are {len(blob)} bytes, header says {int(off[-1])}")
    return off


def unpack_jpeg_frames(blob: bytes | memoryview) -> list[bytes]:
    """The JPEG files of a packed blob, in frame order."""
    off = jpeg_offsets(blob)
    mv = memoryview(blob)
    return [bytes(mv[off[i] : off[i + 1]]) for i in range(len(off) - 1)]

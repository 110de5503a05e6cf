"""How far re-encoding moves the scores: THEval's robustness check on our reference rows.

The real test clips of a prepared dataset (the ground-truth row) and, to see a bound move too,
the static row, are written to mp4 with each (video codec, audio codec) pair below, decoded again
(frames and audio: LSE then hears the re-encoded audio), and scored by the protocol's networks
exactly as ``evaluate`` scores (``build_scorers`` + ``build_suite``). Printed: every metric per
encoding and its difference from the unencoded score; written: ``benchmarks/results/
codec_robustness.json`` with the codecs of what was scored.

    .venv/bin/python benchmarks/codec_robustness.py --data PREP [--protocol synthetic]

PREP needs its experts (``PREP/experts/{syncnet,landmarks}.ckpt``), e.g. the compare corpus's
``compare/synthetic/work/prep`` after ``make compare``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from talking_faces.data.dataset import PreparedDataset, TestPairDataset, WindowConfig  # noqa: E402
from talking_faces.evaluation.scorers import build_scorers, build_suite  # noqa: E402
from talking_faces.names import FPS, SAMPLE_RATE  # noqa: E402

#: (label, video encoder, pixel format, audio encoder): H.264 + AAC is what evaluate and generate
#: write; THEval re-encodes to H.265 and to MPEG audio layer II
ENCODINGS = (
    ("h264+aac", "libx264", "yuv420p", "aac"),
    ("h265+aac", "libx265", "yuv420p", "aac"),
    ("mpeg4+aac", "mpeg4", "yuv420p", "aac"),
    ("h264+mp2", "libx264", "yuv420p", "mp2"),
)
KEYS = (
    "psnr",
    "ssim",
    "lmd",
    "lse_d",
    "lse_c",
    "cpbd",
    "lip_dynamics",
    "head_motion_dynamics",
    "eyebrow_dynamics",
    "silent_lip_mad",
)


def encode(frames: np.ndarray, wave: np.ndarray, path: Path, enc: tuple[str, ...]) -> None:
    """``T,H,W,3`` uint8 frames and 16 kHz mono audio to ``path`` with encoding ``enc``."""
    _, vcodec, pix_fmt, acodec = enc
    with av.open(str(path), "w", format="mp4" if acodec != "mp2" else "matroska") as out:
        video = out.add_stream(vcodec, rate=FPS)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if vcodec == "libx265":
            video.options = {"x265-params": "log-level=none"}
        rate = SAMPLE_RATE if acodec != "mp2" else 32000  # mp2 has no 16 kHz
        audio = out.add_stream(acodec, rate=rate, layout="mono")
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        out.mux(video.encode(None))
        resampled = np.interp(
            np.arange(round(len(wave) * rate / SAMPLE_RATE)) * SAMPLE_RATE / rate,
            np.arange(len(wave)),
            wave,
        ).astype(np.float32)
        fmt = "fltp" if acodec == "aac" else "s16"
        data = resampled if fmt == "fltp" else (np.clip(resampled, -1, 1) * 32767).astype(np.int16)
        chunk = 1152 if acodec == "mp2" else 1024
        for start in range(0, len(data), chunk):
            piece = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data[None, start : start + chunk]), format=fmt, layout="mono"
            )
            piece.sample_rate, piece.pts = rate, start
            for packet in audio.encode(piece):
                out.mux(packet)
        out.mux(audio.encode(None))


def decode(path: Path, num_frames: int, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``T,H,W,3`` uint8 and 16 kHz mono audio of ``path``, cut or padded to the clip."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        parts = [
            r.to_ndarray().reshape(-1)
            for f in container.decode(audio=0)
            for r in resampler.resample(f)
        ]
        parts += [r.to_ndarray().reshape(-1) for r in resampler.resample(None)]
    wave = np.concatenate(parts)[:num_samples]
    wave = np.pad(wave, (0, num_samples - len(wave)))
    return frames[:num_frames], wave


def score(args: argparse.Namespace, enc: tuple[str, ...] | None, row: str) -> dict[str, float]:
    prepared = PreparedDataset.load(args.data)
    pairs = TestPairDataset(prepared, WindowConfig())
    scorers = build_scorers(args.protocol, args.data)
    suite, _ = build_suite(scorers, args.protocol, 1, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(len(pairs)):
            item = pairs[i]
            real = item["frames"].permute(0, 2, 3, 1).numpy()
            frames = real if row == "ground-truth" else np.repeat(real[:1], len(real), 0)
            frames = np.ascontiguousarray(frames)
            wave = item["waveform"].numpy()
            if enc is not None:
                path = Path(tmp) / f"{i}.mkv"
                encode(frames, wave, path, enc)
                frames, wave = decode(path, len(real), len(wave))
            pred = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous().float().div(255)[None]
            target = item["frames"].float().div(255)[None]
            ref = scorers.landmark_model(target[0])[None] if scorers.landmark_model else None
            suite.update(
                pred,
                target,
                torch.from_numpy(wave)[None],
                ref,
                None,
                clip_ids=[item["clip_id"]],
                silence=item["silence"][None] if item["silence_known"] else None,
            )
    return {k: v for k, v in suite.compute().items() if k in KEYS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="prepared dataset with its experts")
    parser.add_argument("--protocol", default="synthetic")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/codec_robustness.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for row in ("ground-truth", "static"):
        rows[row] = {"none": score(args, None, row)}
        for enc in ENCODINGS:
            rows[row][enc[0]] = score(args, enc, row)
    for row, by_enc in rows.items():
        base = by_enc["none"]
        print(f"\n{row}: " + "  ".join(f"{k} {base[k]:.5g}" for k in KEYS if k in base))
        for label, scores in by_enc.items():
            if label != "none":
                moves = "  ".join(f"{k} {scores[k] - base[k]:+.4g}" for k in KEYS if k in base)
                print(f"  {label:10s} {moves}")
    record = {
        "data": str(Path(args.data).resolve()),
        "data_sha256": PreparedDataset.load(args.data).identity_sha256(),
        "protocol": args.protocol,
        "encodings": [
            {"label": e[0], "video": e[1], "pix_fmt": e[2], "audio": e[3]} for e in ENCODINGS
        ],
        "rows": rows,
        "av": av.__version__,
        "ffmpeg": ".".join(str(v) for v in av.library_versions.get("libavcodec", ())),
        "machine": platform.processor() or platform.machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {args.out} ({record['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

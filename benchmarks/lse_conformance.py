"""How far LSE moved when frames started reaching SyncNet as Wav2Lip's LRS scorer hands them over.

LSE (``talking_faces.metrics.sync``) now resizes each 8-bit BGR frame with ``cv2.resize``
(``INTER_LINEAR``), as Wav2Lip's ``evaluation/scores_LSE`` scripts do; ``tests/
test_lse_conformance.py`` checks that the scores equal the script's to 1e-4. Before, frames were
resized as floats by ``torch.nn.functional.interpolate`` (bilinear) and then rounded. This script
scores decoded clips of the synthetic corpus both ways with a SyncNet of the public architecture
(random weights made here: the public ``syncnet_v2.model`` cannot be downloaded on this machine)
and reports, per clip size, the share of SyncNet input pixels that differ and the change of
LSE-D, LSE-C and the offset.

    .venv/bin/python benchmarks/lse_conformance.py            # 4 LRW clips at 256 px, 4 GRID at 128

Prints a table and writes ``benchmarks/results/lse_conformance.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def float_resize_path(frames, image_size: int = 224):
    """The transform LSE used before: float bilinear ``interpolate``, rounded, then BGR."""
    import torch.nn.functional as F

    x = (frames.float() * 255.0).round().clamp(0, 255)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).flip(1)


def decode(video: Path, audio: Path):
    """``T,H,W,3`` uint8 RGB frames and int16 16 kHz mono samples (PyAV; FFmpeg's resampler)."""
    import av
    import numpy as np

    with av.open(str(video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    chunks = []
    with av.open(str(audio)) as container:
        for frame in container.decode(audio=0):
            chunks += [r.to_ndarray() for r in resampler.resample(frame)]
    chunks += [r.to_ndarray() for r in resampler.resample(None)]
    return frames, np.concatenate(chunks, axis=1)[0].astype(np.int16)


def synth_clips(out: Path, clips: int) -> list[tuple[str, Path, Path]]:
    from talking_faces.cli.main import main

    found = []
    lrw = out / "lrw"
    args = ["synth", str(lrw), "--layout", "lrw", "--speakers", "1", "--clips", str(clips)]
    assert main([*args, "--size", "256", "--overwrite"]) == 0
    found += [("lrw-256", p, p) for p in sorted(lrw.rglob("*.mp4"))[:clips]]
    grid = out / "grid"
    args = ["synth", str(grid), "--layout", "grid", "--speakers", "1", "--clips", str(clips)]
    assert main([*args, "--size", "128", "--overwrite"]) == 0
    found += [("grid-128", p, p.with_suffix(".wav")) for p in sorted(grid.rglob("*.mpg"))[:clips]]
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clips", type=int, default=4, help="clips per layout (default 4)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lse_conformance.json"))
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from talking_faces.metrics.sync import (
        lse_from_distances,
        sync_distances,
        sync_windows,
    )
    from talking_faces.nn.syncnet import SyncNet
    from talking_faces.utils.io import write_json_atomic

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = SyncNet().eval()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)

    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for kind, video_path, audio_path in synth_clips(Path(tmp), args.clips):
            rgb, pcm = decode(video_path, audio_path)
            frames = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
            wave = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
            video, audio = sync_windows(frames, wave, 224, "full", None, "bgr")
            n = video.shape[0]
            old_frames = float_resize_path(frames)
            old_video = old_frames.transpose(0, 1).unfold(1, 5, 1).permute(1, 0, 4, 2, 3)[:n]
            a = net.forward_aud(audio)
            new = lse_from_distances(sync_distances(net.forward_lip(video), a))
            old = lse_from_distances(sync_distances(net.forward_lip(old_video), a))
            new_pixels = video[:, :, 0]
            diff = (old_video[:, :, 0] - new_pixels).abs()
            rows.append(
                {
                    "clip": f"{kind}/{video_path.name}",
                    "kind": kind,
                    "frames": int(rgb.shape[0]),
                    "pixels_differing": float((diff > 0).float().mean()),
                    "max_pixel_difference": float(diff.max()),
                    "lse_d": new["lse_d"],
                    "lse_d_old_minus_new": old["lse_d"] - new["lse_d"],
                    "lse_c_old_minus_new": old["lse_c"] - new["lse_c"],
                    "offset_changed": old["offset"] != new["offset"],
                }
            )
            r = rows[-1]
            print(
                f"{r['clip']:34} pixels differing {r['pixels_differing']:6.2%} (max "
                f"{r['max_pixel_difference']:.0f})  LSE-D {r['lse_d']:.4f}  old-new "
                f"{r['lse_d_old_minus_new']:+.2e}  LSE-C old-new {r['lse_c_old_minus_new']:+.2e}"
                f"  offset changed {r['offset_changed']}"
            )
    summary = {}
    for kind in sorted({r["kind"] for r in rows}):
        sel = [r for r in rows if r["kind"] == kind]
        summary[kind] = {
            "clips": len(sel),
            "pixels_differing_mean": float(np.mean([r["pixels_differing"] for r in sel])),
            "lse_d_abs_change_max": float(max(abs(r["lse_d_old_minus_new"]) for r in sel)),
            "lse_c_abs_change_max": float(max(abs(r["lse_c_old_minus_new"]) for r in sel)),
            "offsets_changed": sum(r["offset_changed"] for r in sel),
        }
        s = summary[kind]
        print(
            f"{kind}: {s['pixels_differing_mean']:.2%} of pixels differ; |LSE-D change| up to "
            f"{s['lse_d_abs_change_max']:.2e}, |LSE-C change| up to {s['lse_c_abs_change_max']:.2e}"
        )
    write_json_atomic(
        Path(args.out),
        {
            "syncnet": "public architecture, random weights (seed 0), random BN statistics",
            "threads": args.threads,
            "summary": summary,
            "clips": rows,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TALKING_FACES_QUIET", "1")
    sys.exit(main())

"""Training and generation throughput of every method in MODELS, with model-FLOPs utilisation.

For each model, frame size (64, 128 px) and precision (fp32, bf16-mixed), on random tensors of the
batch contract (so data loading is not measured):

- training samples/s (one sample = one clip window of T frames; forward, backward, optimizer step),
- generation frames/s (``generate`` on one clip, K = 1: the real-time figure),
- peak memory (CUDA: max allocated; CPU: peak resident set of the process that ran the case,
  each case runs in its own process),
- MFU: FLOPs of one training step counted with ``torch.utils.flop_counter.FlopCounterMode``,
  times steps/s, divided by the peak matmul FLOP/s measured in the same run on the same machine
  and precision (square matmuls, best of several sizes).

FlopCounterMode counts matmuls and convolutions (forward and backward); LSTM kernels that go to a
fused backend are not counted, which makes the MFU slightly conservative.

    .venv/bin/python benchmarks/throughput.py                    # all models, both sizes, fp32+bf16
    .venv/bin/python benchmarks/throughput.py --threads 2 --preset paper --sizes 128
    .venv/bin/python benchmarks/throughput.py --device cuda --batch 5 --frames 75

Prints a table and writes ``benchmarks/results/throughput-<device>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRECISIONS = {"fp32": None, "bf16-mixed": "bfloat16"}


def autocast(device: str, precision: str):
    import torch

    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: str, precision: str, seconds: float = 2.0) -> float:
    """Best FLOP/s of square matmuls in ``precision`` (fp32 or bf16) on ``device``."""
    import torch

    dtype = torch.float32 if PRECISIONS[precision] is None else torch.bfloat16
    sizes = (1024, 2048, 4096) if device == "cpu" else (4096, 8192)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        sync(device)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / len(sizes) or reps < 2:
            a @ b
            sync(device)
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def build(name: str, preset: str, size: int, window: int, features: int):
    from omegaconf import OmegaConf

    from talking_faces.runconfig import load_config
    from talking_faces.models import MODELS

    path = (
        ROOT
        / "experiments"
        / "model"
        / (f"{name}.yaml" if preset == "paper" else f"{name}_tiny.yaml")
    )
    cfg = load_config([str(path)]).model
    overrides = {"image_size": size, "audio_window": window, "audio_features": features}
    return MODELS[name](OmegaConf.merge(cfg, overrides))


def batch_for(b: int, t: int, size: int, window: int, features: int, device: str) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    batch = {
        "frames": torch.rand(b, t, 3, size, size, generator=g),
        "identity": torch.rand(b, 3, size, size, generator=g),
        "audio": torch.randn(b, t, window, features, generator=g),
        "waveform": torch.randn(b, t * 640, generator=g),
        "landmarks": torch.rand(b, t, 68, 2, generator=g) * size,
        "landmarks_valid": torch.ones(b, t, dtype=torch.bool),
        "speaker": torch.zeros(b, dtype=torch.long),
        "word": torch.full((b,), -1, dtype=torch.long),
        "start": torch.zeros(b, dtype=torch.long),
    }
    out = {k: v.to(device) for k, v in batch.items()}
    out["clip_id"] = [f"bench{i}" for i in range(b)]
    return out


def train_step_fn(model, batch, device: str, precision: str):
    """One optimisation step as the model's training does it (manual optimisation included)."""
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt

    def step() -> None:
        with autocast(device, precision):
            loss = model.loss(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(fn, device: str, min_seconds: float, min_reps: int = 2) -> float:
    """Seconds per call of ``fn`` (after one warm-up call)."""
    fn()
    sync(device)
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_seconds:
        fn()
        sync(device)
        reps += 1
    return (time.perf_counter() - start) / reps


def run_case(args: argparse.Namespace, name: str, size: int, precision: str, peak: float) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = args.device
    torch.manual_seed(0)
    model = build(name, args.preset, size, args.window, args.features).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batch = batch_for(args.batch, args.frames, size, args.window, args.features, device)

    model.train()
    step = train_step_fn(model, batch, device, precision)
    step()  # warm-up outside the counter (lazy init, allocator)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    sec = timed(step, device, args.seconds)
    train_sps = args.batch / sec

    model.eval()
    gen_t = args.gen_frames
    ident = batch["identity"][:1]
    audio = batch_for(1, gen_t, size, args.window, args.features, device)["audio"]

    def gen() -> None:
        with torch.inference_mode(), autocast(device, precision):
            model.generate(ident, audio, 1, torch.Generator(device=device).manual_seed(0))

    gsec = timed(gen, device, args.seconds)
    if device == "cuda":
        peak_mem = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    params = sum(p.numel() for p in model.parameters())
    return {
        "model": name,
        "preset": args.preset,
        "size": size,
        "precision": precision,
        "batch": args.batch,
        "frames": args.frames,
        "params_m": params / 1e6,
        "train_step_s": sec,
        "train_samples_per_s": train_sps,
        "train_frames_per_s": train_sps * args.frames,
        "train_step_gflop": flops / 1e9,
        "achieved_tflops": flops / sec / 1e12,
        "peak_matmul_tflops": peak / 1e12,
        "mfu": flops / sec / peak,
        "generate_frames_per_s": gen_t / gsec,
        "generate_clip_frames": gen_t,
        "peak_memory_mib": peak_mem,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="*", help="names from MODELS (default: all)")
    p.add_argument("--sizes", nargs="*", type=int, default=[64, 128])
    p.add_argument("--precisions", nargs="*", default=list(PRECISIONS), choices=list(PRECISIONS))
    p.add_argument("--preset", choices=["paper", "tiny"], default="paper")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    p.add_argument("--batch", type=int, default=2, help="clips per training step")
    p.add_argument("--frames", type=int, default=4, help="T frames per training clip")
    p.add_argument("--gen-frames", type=int, default=25, help="frames generated per clip")
    p.add_argument("--window", type=int, default=28)
    p.add_argument("--features", type=int, default=12)
    p.add_argument("--seconds", type=float, default=5.0, help="minimum timing per measurement")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: one case, JSON out
    p.add_argument("--peak", type=float, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        name, size, precision = args.case.split(":")
        print(json.dumps(run_case(args, name, int(size), precision, args.peak)))
        return 0

    from talking_faces.models import MODELS
    from talking_faces.utils.io import write_json_atomic

    names = args.models or sorted(MODELS)
    peaks = {p: matmul_peak(args.device, p) for p in args.precisions}
    for p, v in peaks.items():
        threads = torch.get_num_threads()
        print(f"peak matmul {p}: {v / 1e12:.3f} TFLOP/s ({args.device}, {threads} threads)")
    results = []
    header = (
        f"{'model':8} {'px':>4} {'precision':10} {'train smp/s':>11} {'GFLOP/step':>10} "
        f"{'MFU':>6} {'gen fps':>8} {'peak MiB':>9}"
    )
    print(header)
    for name in names:
        for size in args.sizes:
            for precision in args.precisions:
                case = f"{name}:{size}:{precision}"
                cmd = [sys.executable, __file__, *_passthrough(args), "--case", case]
                cmd += ["--peak", repr(peaks[precision])]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{case}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                    return 1
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(r)
                print(
                    f"{name:8} {size:>4} {precision:10} {r['train_samples_per_s']:>11.2f} "
                    f"{r['train_step_gflop']:>10.1f} {r['mfu']:>6.1%} "
                    f"{r['generate_frames_per_s']:>8.1f} {r['peak_memory_mib']:>9.0f}"
                )
    out = (
        Path(args.out)
        if args.out
        else ROOT / "benchmarks" / "results" / f"throughput-{args.device}.json"
    )
    write_json_atomic(
        out,
        {
            "device": args.device,
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda_device": torch.cuda.get_device_name() if args.device == "cuda" else None,
            "peak_matmul_tflops": {p: v / 1e12 for p, v in peaks.items()},
            "settings": {
                k: getattr(args, k)
                for k in (
                    "preset",
                    "batch",
                    "frames",
                    "gen_frames",
                    "window",
                    "features",
                    "channels_last",
                )
            },
            "results": results,
        },
    )
    print(f"wrote {out}")
    return 0


def _passthrough(args: argparse.Namespace) -> list[str]:
    out = ["--preset", args.preset, "--device", args.device]
    out += ["--batch", str(args.batch), "--frames", str(args.frames)]
    out += ["--gen-frames", str(args.gen_frames), "--window", str(args.window)]
    out += ["--features", str(args.features), "--seconds", str(args.seconds)]
    if args.threads:
        out += ["--threads", str(args.threads)]
    if args.channels_last:
        out.append("--channels-last")
    return out


if __name__ == "__main__":
    os.environ.setdefault("TALKING_FACES_QUIET", "1")
    sys.exit(main())

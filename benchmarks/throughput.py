"""Training and generation throughput of every method in MODELS, with model-FLOPs utilisation.

Every name in ``talking_faces.models.MODELS`` is measured with its preset,
``experiments/model/<name>.yaml`` (``--preset paper``) or ``<name>_tiny.yaml`` (``--preset
tiny``), so a newly registered method is picked up by name. For each method, frame size
(default 128 px; ``--sizes preset`` takes each preset's own) and precision (fp32, bf16-mixed), on
random tensors of the batch contract (data loading is not measured):

- training: seconds per step and samples/s (one sample = one clip window of T frames; ``--frames
  4 davs=12`` gives one method its own T), timed in Lightning's own fit loop, so
  manual-optimisation methods (GANs) run their ``training_step``. A perceptual loss on torchvision's
  VGG19 (amie's paper preset) needs ``vgg19-dcbedc0f.pth`` in the torch hub cache; when it is not
  there the case writes an architecture-correct VGG19 state dict with random weights
  (``torchvision.models.vgg19(weights=None)``) into a temporary ``TORCH_HOME`` (never into the
  user's cache) and says so. One on the dataset's landmark expert (amie's tiny preset) gets an
  expert of the expert preset's architecture with random weights. The step timed is the real one,
  perceptual loss included: its speed does not depend on the weights' values;
- generation: frames/s of ``generate`` (K = 1) on clips of ``--gen-frames`` frames at batch 1 (the
  real-time figure) and at the batch that fills the machine: batches 1, 2, 4, ... are tried until
  frames/s stops improving by at least ``--min-gain`` (or ``--max-gen-batch``);
- MFU: FLOPs counted with ``torch.utils.flop_counter.FlopCounterMode`` (the second training step
  of a run, the kind that is timed: the first step is left out of both, since a method can take
  another path at step 0, e.g. amie's scheduled sampling; one generated clip at batch 1, per
  frame), times the measured rate, divided by the peak matmul FLOP/s measured in the same process
  before and after the case, same precision (square matmuls, best of several sizes and, on CPU, of
  MKL's and oneDNN's GEMM; the higher of the two measurements). On CPU every rate is also given
  per CPU-second of the process (``*_cpu``): on a machine shared with other jobs that figure,
  with ``--threads 1``, is what the code achieves on the core it gets, while wall-clock rates
  depend on the others' load;
- peak memory (CUDA: max allocated; CPU: peak resident set of the process that ran the case; each
  case runs in its own process).

FlopCounterMode counts matmuls and convolutions (forward and backward); element-wise work (batch
norm, activations) and LSTM kernels that go to a fused backend are not counted, which makes the
MFU conservative.

    .venv/bin/python benchmarks/throughput.py --threads 1        # every method, paper preset
    .venv/bin/python benchmarks/throughput.py --preset tiny --sizes 64 --threads 1 \
        --batch 4 --frames 8
    .venv/bin/python benchmarks/throughput.py --models davs amie --sizes 256 --threads 1 \
        --frames 4 davs=12 --gen-frames 10     # davs trains on its 12-frame windows
    .venv/bin/python benchmarks/throughput.py --device cuda --precisions bf16-mixed \
        --batch 5 --frames 75

Prints a table and writes ``benchmarks/results/throughput-<device>.json`` (or ``--out``).
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
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRECISIONS = {"fp32": None, "bf16-mixed": "bfloat16"}
#: model config fields that ``fit`` fills from a prepared dataset, with the values used here when
#: a preset leaves them unset (image_size, audio_window and audio_features come from the options)
DATA_DEFAULTS = {"num_words": 500, "num_speakers": 34}


def autocast(device: str, precision: str):
    import torch

    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: str, precision: str, seconds: float = 2.0) -> dict[str, float]:
    """Best FLOP/s of square matmuls in ``precision`` (fp32 or bf16) on ``device``, per wall-clock
    second (``wall``) and, on CPU, per CPU-second of this process (``cpu``).

    On CPU both of PyTorch's matmul libraries are tried, ``torch.matmul`` (MKL for fp32) and
    oneDNN's (the library behind PyTorch's CPU convolutions): MKL's fp32 GEMM runs at less than
    half of oneDNN's on AMD processors, and a peak below what the convolutions reach would make
    every MFU look better than it is.
    """
    import torch

    dtype = torch.float32 if PRECISIONS[precision] is None else torch.bfloat16
    sizes = (1024, 2048, 4096) if device == "cpu" else (4096, 8192)
    best = {"wall": 0.0, "cpu": 0.0}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        kernels = [lambda a=a, b=b: a @ b]
        if device == "cpu" and torch.backends.mkldnn.is_available():
            a_dnn = a.to_mkldnn()
            kernels.append(lambda a_dnn=a_dnn, b=b: torch._C._nn.mkldnn_linear(a_dnn, b, None))
        for kernel in kernels:
            kernel()
            sync(device)
            reps, start, cpu = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - start < seconds / len(sizes) / len(kernels) or reps < 2:
                kernel()
                sync(device)
                reps += 1
            flop = 2 * n**3 * reps
            best["wall"] = max(best["wall"], flop / (time.perf_counter() - start))
            best["cpu"] = max(best["cpu"], flop / max(time.process_time() - cpu, 1e-9))
    return best


class _GlobalOnly:
    """Stands in for ``FlopCounterMode``'s module tracker: every count goes to the global total.

    The tracker hooks every module call and, in torch 2.x, fails on a view made under
    ``no_grad`` of a tensor that requires grad ("Expected gradient function to be set"), which
    amie's MI readings pass to its estimator; only the total is used here.
    """

    parents = frozenset({"Global"})

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc) -> None:
        return None


def flop_counter():
    """A ``FlopCounterMode`` that counts the global total only (no per-module breakdown)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    if hasattr(counter, "mod_tracker"):
        counter.mod_tracker = _GlobalOnly()
    return counter


def preset_path(name: str, preset: str) -> Path:
    """``experiments/model/<name>.yaml`` (paper) or ``<name>_tiny.yaml`` (tiny)."""
    file = f"{name}.yaml" if preset == "paper" else f"{name}_tiny.yaml"
    return ROOT / "experiments" / "model" / file


def build(name: str, preset: str, size: int, window: int, features: int):
    """``MODELS[name]`` from its preset at ``size`` px; data-shaped fields the preset leaves
    unset get ``window``, ``features`` and :data:`DATA_DEFAULTS`."""
    from omegaconf import OmegaConf

    from talking_faces.models import MODELS
    from talking_faces.training.runconfig import load_config

    cfg = load_config([str(preset_path(name, preset))]).model
    overrides = {"image_size": size}
    for key, value in {"audio_window": window, "audio_features": features, **DATA_DEFAULTS}.items():
        if key in cfg and cfg[key] is None:
            overrides[key] = value
    return MODELS[name](OmegaConf.merge(cfg, overrides))


#: how the case's perceptual loss got its feature network when the real one is not on this machine
VGG19_STAND_IN = (
    "random VGG19 weights (torchvision.models.vgg19(weights=None), architecture-correct) in a "
    "temporary TORCH_HOME: the ImageNet file is not in the torch hub cache; speed does not depend "
    "on the values"
)
LANDMARKS_STAND_IN = (
    "a landmark expert of experiments/experts/landmarks.yaml's architecture with random weights "
    "(no dataset here); speed does not depend on the values"
)


@contextlib.contextmanager
def perceptual_net(model, size: int) -> Iterator[str | None]:
    """Gives ``model``'s perceptual loss its feature network for the case; yields where it came
    from, or None when the method has no perceptual loss.

    - ``perceptual: vgg19``: the ImageNet file in the user's torch hub cache when it is there;
      otherwise an architecture-correct state dict with random weights is written into a
      temporary ``TORCH_HOME`` (removed afterwards; the user's cache is never written);
    - ``perceptual: landmarks`` (the dataset's landmark expert, which ``fit`` attaches): an
      expert of the expert preset's architecture at ``size`` px with random weights.

    Either way the timed training step is the real one, perceptual loss included.
    """
    cfg = model.config
    kind = getattr(cfg, "perceptual", None)
    if kind not in ("vgg19", "landmarks") or not getattr(cfg, "w_perceptual", 0) > 0:
        yield None
        return
    if kind == "landmarks":
        from talking_faces.experts.landmarks import LandmarkExpert
        from talking_faces.training.runconfig import load_config

        preset = ROOT / "experiments" / "experts" / "landmarks.yaml"
        width = int(load_config([str(preset)]).model.width)
        model.attach_landmark_model(LandmarkExpert(width=width, image_size=size))
        print(f"  {cfg.name}: perceptual loss on {LANDMARKS_STAND_IN}", file=sys.stderr, flush=True)
        yield LANDMARKS_STAND_IN
        return
    import warnings

    import torch
    import torchvision

    from talking_faces.nn.perceptual import vgg19_weights_path

    if vgg19_weights_path().is_file():
        yield f"ImageNet VGG19 from {vgg19_weights_path()}"
        return
    old = os.environ.get("TORCH_HOME")
    with tempfile.TemporaryDirectory(prefix="throughput-torch-home-") as home:
        os.environ["TORCH_HOME"] = home
        try:
            path = vgg19_weights_path()
            path.parent.mkdir(parents=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.save(torchvision.models.vgg19(weights=None).state_dict(), path)
            print(f"  {cfg.name}: perceptual loss on {VGG19_STAND_IN}", file=sys.stderr, flush=True)
            yield VGG19_STAND_IN
        finally:
            if old is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = old


def batch_for(b: int, t: int, size: int, window: int, features: int, device: str) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    batch = {
        "frames": torch.rand(b, t, 3, size, size, generator=g),
        "identity": torch.rand(b, 3, size, size, generator=g),
        "audio": torch.randn(b, t, window, features, generator=g),
        "waveform": torch.randn(b, t * 640, generator=g),
        "landmarks": size / 4 + torch.rand(b, t, 68, 2, generator=g) * size / 2,
        "landmarks_valid": torch.ones(b, t, dtype=torch.bool),
        "speaker": torch.zeros(b, dtype=torch.long),
        "word": torch.zeros(b, dtype=torch.long),
        "start": torch.zeros(b, dtype=torch.long),
    }
    out = {k: v.to(device) for k, v in batch.items()}
    out["clip_id"] = [f"bench{i}" for i in range(b)]
    return out


class _Repeat:
    """``steps`` copies of one batch, as a map-style dataset for ``DataLoader(batch_size=None)``."""

    def __init__(self, batch: dict, steps: int) -> None:
        self.batch, self.steps = batch, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict:
        return self.batch


def fit_repeated(
    model, batch: dict, steps: int, device: str, precision: str, callbacks: list
) -> None:
    """``steps`` training steps of ``model`` on ``batch`` in Lightning's own fit loop (no
    validation, logging, checkpoints or progress bar; ``precision`` is Lightning's). One epoch of
    ``steps`` batches: ``max_steps`` would count every optimizer's step of a manual-optimisation
    method."""
    import lightning as L
    import torch

    trainer = L.Trainer(
        accelerator="cuda" if device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    loader = torch.utils.data.DataLoader(_Repeat(batch, steps), batch_size=None)
    trainer.fit(model, train_dataloaders=loader)


def train_timing(
    args: argparse.Namespace, model, batch: dict, precision: str
) -> tuple[dict, float]:
    """Seconds per training step (``wall``, ``cpu``) and FLOPs of one step, measured in
    Lightning's own fit loop, so every method is timed as ``fit`` trains it (``training_step``,
    manual optimisation included; ``precision`` is Lightning's ``bf16-mixed`` or ``32-true``).

    The first step of each fit is left out of the timing and of the FLOP count: besides lazy
    initialisation, a method may take another path at global step 0 (amie's scheduled sampling
    feeds back generated frames, one at a time, from step 1 on), so the FLOPs are those of the
    second step, the kind every timed step is."""
    import logging

    import lightning as L

    # Lightning sets its logger to INFO when imported; its banners would fill the table
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    device = args.device

    class StepTimer(L.Callback):
        def __init__(self, warmup: int) -> None:
            self.warmup, self.times, self.cpu = warmup, [], []
            self.start = self.start_cpu = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            sync(device)
            self.start, self.start_cpu = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sync(device)
            if batch_idx >= self.warmup:
                self.times.append(time.perf_counter() - self.start)
                self.cpu.append(time.process_time() - self.start_cpu)
            if len(self.times) >= 2 and sum(self.times) >= args.seconds:
                trainer.should_stop = True

    class CountStep(L.Callback):
        """FLOPs of the step at ``batch_idx`` 1 (forward, backward, optimizer steps)."""

        def __init__(self) -> None:
            self.counter = flop_counter()
            self.active = False

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 1:
                self.counter.__enter__()
                self.active = True

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.close()

        def close(self) -> None:
            if self.active:
                self.active = False
                self.counter.__exit__(None, None, None)

    def fit(steps: int, callbacks: list) -> None:
        lightning_precision = "32-true" if PRECISIONS[precision] is None else precision
        fit_repeated(model, batch, steps, device, lightning_precision, callbacks)

    count = CountStep()
    try:
        fit(2, [count])  # step 0 warms up (lazy init, allocator, optimizer state), step 1 counted
    finally:
        count.close()
    timer = StepTimer(warmup=1)
    fit(10_000, [timer])
    n = len(timer.times)
    flops = count.counter.get_total_flops()
    return {"wall": sum(timer.times) / n, "cpu": sum(timer.cpu) / n}, flops


def timed(fn, device: str, min_seconds: float, min_reps: int = 2, warmup=None) -> dict:
    """Wall-clock and process CPU seconds per call of ``fn`` (after one warm-up call of
    ``warmup`` or ``fn``)."""
    (warmup or fn)()
    sync(device)
    reps, start, cpu = 0, time.perf_counter(), time.process_time()
    while reps < min_reps or time.perf_counter() - start < min_seconds:
        fn()
        sync(device)
        reps += 1
    return {
        "wall": (time.perf_counter() - start) / reps,
        "cpu": (time.process_time() - cpu) / reps,
    }


def generation(args: argparse.Namespace, model, size: int, precision: str) -> dict:
    """Frames/s of ``generate`` at batch 1 and at the batch that fills the machine (on CPU: the
    best frames per CPU-second, the figure that sharing the machine does not move; on CUDA: per
    wall-clock second), with the FLOPs of one generated frame."""
    import torch

    device, t = args.device, args.gen_frames
    window, features = model.config.audio_window, model.config.audio_features
    rate = "frames_per_cpu_s" if device == "cpu" else "frames_per_s"
    model.eval()

    def gen_fn(b: int, frames: int):
        data = batch_for(b, frames, size, window, features, device)

        def gen() -> None:
            seed = torch.Generator(device=device).manual_seed(0)
            with torch.inference_mode(), autocast(device, precision):
                model.generate(data["identity"], data["audio"], 1, seed)

        return gen

    # the model's FLOPs do not depend on the precision; counted in fp32 (the counter's fallback
    # for aten.lstm does not run under CPU bf16 autocast)
    with flop_counter() as counter:
        data = batch_for(1, t, size, window, features, device)
        with torch.inference_mode():
            model.generate(data["identity"], data["audio"], 1)
    flop_per_frame = counter.get_total_flops() / t
    sweep: list[dict] = []
    best = None
    b = 1
    while b <= args.max_gen_batch:
        try:
            sec = timed(gen_fn(b, t), device, args.seconds, 1, warmup=gen_fn(b, min(t, 2)))
        except torch.OutOfMemoryError:
            break
        row = {
            "batch": b,
            "frames_per_s": b * t / sec["wall"],
            "frames_per_cpu_s": b * t / max(sec["cpu"], 1e-9),
        }
        sweep.append(row)
        print(
            f"  {model.config.name} generate batch {b}: {row['frames_per_s']:.2f} frames/s, "
            f"{row['frames_per_cpu_s']:.2f} per CPU-second",
            file=sys.stderr,
            flush=True,
        )
        improved = best is None or row[rate] >= best[rate] * (1 + args.min_gain)
        best = row if best is None or row[rate] > best[rate] else best
        if not improved:
            break
        b *= 2
    return {
        "clip_frames": t,
        "gflop_per_frame": flop_per_frame / 1e9,
        "filled_by": rate,
        "batch1": sweep[0],
        "filling": best,
        "sweep": sweep,
    }


def run_case(args: argparse.Namespace, name: str, size: int, precision: str) -> dict:
    import torch

    device = args.device
    torch.manual_seed(0)
    # peak before and after the case; the higher is the reference, so that MFU is never
    # flattered by a peak measured while someone else held the machine
    peak = matmul_peak(device, precision)
    model = build(name, args.preset, size, args.window, args.features).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    window, features = model.config.audio_window, model.config.audio_features
    frames = frames_for(name, args.frames)
    batch = batch_for(args.batch, frames, size, window, features, device)

    with perceptual_net(model, size) as perceptual:
        try:
            sec, flops = train_timing(args, model, batch, precision)
            train_error = None
        except Exception as exc:  # e.g. a loss that needs a dataset's expert: time generation
            sec, flops = None, None
            train_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"  {name} training not timed: {train_error}", file=sys.stderr, flush=True)
    gen = generation(args, model, size, precision)
    if device == "cuda":
        peak_mem = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    again = matmul_peak(device, precision)
    peak = {k: max(peak[k], again[k]) for k in peak}
    flop_frame = gen["gflop_per_frame"] * 1e9
    for row in gen["sweep"]:  # batch1 and filling are rows of the sweep
        row["mfu"] = flop_frame * row["frames_per_s"] / peak["wall"]
        row["mfu_cpu"] = flop_frame * row["frames_per_cpu_s"] / peak["cpu"]
    params = sum(p.numel() for p in model.parameters())
    return {
        "model": name,
        "preset": args.preset,
        "size": size,
        "precision": precision,
        "batch": args.batch,
        "frames": frames,
        "params_m": params / 1e6,
        "peak_matmul_tflops": {k: v / 1e12 for k, v in peak.items()},
        "perceptual_weights": perceptual,
        "train_error": train_error,
        **(_train_figures(args, sec, flops, peak) if train_error is None else {}),
        "generate": gen,
        "peak_memory_mib": peak_mem,
    }


def frames_for(name: str, frames: list[str]) -> int:
    """T of ``name``'s training clips from ``--frames`` (``4``, or ``4 davs=12``)."""
    default = next(int(item) for item in frames if "=" not in item)
    named = dict(item.split("=", 1) for item in frames if "=" in item)
    return int(named.get(name, default))


def _frames_arg(frames: list[str]) -> list[str]:
    """Checks ``--frames``: one T, optionally followed by NAME=T entries."""
    for item in frames:
        value = item.rpartition("=")[2]
        if not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"--frames takes T or NAME=T (T >= 1), got {item!r}")
    if sum("=" not in item for item in frames) != 1:
        raise argparse.ArgumentTypeError("--frames takes exactly one T (then NAME=T entries)")
    return frames


def _train_figures(args: argparse.Namespace, sec: dict, flops: float, peak: dict) -> dict:
    return {
        "train_step_s": sec["wall"],
        "train_step_cpu_s": sec["cpu"],
        "train_samples_per_s": args.batch / sec["wall"],
        "train_step_gflop": flops / 1e9,
        "achieved_tflops": flops / sec["wall"] / 1e12,
        "mfu": flops / sec["wall"] / peak["wall"],
        "mfu_cpu": flops / max(sec["cpu"], 1e-9) / peak["cpu"],
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="*", help="names from MODELS (default: all)")
    p.add_argument(
        "--sizes",
        nargs="*",
        default=["128"],
        help="frame sizes in pixels, or 'preset' for each preset's own image_size (default 128)",
    )
    p.add_argument("--precisions", nargs="*", default=list(PRECISIONS), choices=list(PRECISIONS))
    p.add_argument("--preset", choices=["paper", "tiny"], default="paper")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    p.add_argument("--batch", type=int, default=2, help="clips per training step")
    p.add_argument(
        "--frames",
        nargs="+",
        default=["4"],
        help="T frames per training clip, then NAME=T for a method's own T (e.g. 4 davs=12)",
    )
    p.add_argument("--gen-frames", type=int, default=25, help="frames generated per clip")
    p.add_argument("--max-gen-batch", type=int, default=256, help="largest generation batch tried")
    p.add_argument(
        "--min-gain",
        type=float,
        default=0.03,
        help="stop doubling the generation batch when frames/s grows less than this (0.03 = 3%%)",
    )
    p.add_argument("--window", type=int, default=28, help="audio window rows, if a preset has none")
    p.add_argument("--features", type=int, default=12, help="audio features, if a preset has none")
    p.add_argument("--seconds", type=float, default=5.0, help="minimum timing per measurement")
    p.add_argument("--channels-last", action="store_true", help="convert the whole model to NHWC")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: one case, JSON out
    return p.parse_args(argv)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        _frames_arg(args.frames)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        import warnings

        warnings.filterwarnings("ignore", module="lightning")
        name, size, precision = args.case.split(":")
        print(json.dumps(run_case(args, name, _size(name, args.preset, size), precision)))
        return 0

    from talking_faces.models import MODELS
    from talking_faces.utils.io import write_json_atomic

    names = args.models or sorted(MODELS)
    missing = [n for n in names if n not in MODELS or not preset_path(n, args.preset).is_file()]
    if missing:
        print(
            f"error: no {args.preset} preset for {', '.join(missing)} (expected "
            f"{preset_path(missing[0], args.preset)}); methods: {', '.join(sorted(MODELS))}",
            file=sys.stderr,
        )
        return 2
    cpu = args.device == "cpu"
    print(
        f"{args.device}, {torch.get_num_threads()} threads; MFU against the matmul peak measured "
        f"in each case"
        + (" (per CPU-second of the process: robust to sharing the machine)" if cpu else "")
    )
    results: list[dict] = []
    failed: list[dict] = []
    unit = "CPU-s" if cpu else "s"
    header = (
        f"{'model':6} {'px':>4} {'precision':10} {unit + '/step':>12} {'GFLOP/step':>10} "
        f"{'MFU':>6} | {'GFLOP/frame':>11} {'b1 fr/' + unit:>11} {'MFU':>6} {'fill b':>6} "
        f"{'fr/' + unit:>8} {'MFU':>6} {'peak MiB':>9}"
    )
    print(header)
    for name in names:
        for size_arg in args.sizes:
            size = _size(name, args.preset, size_arg)
            for precision in args.precisions:
                case = f"{name}:{size}:{precision}"
                cmd = [sys.executable, __file__, *_passthrough(args), "--case", case]
                # the case's stderr (its progress, or why it failed) goes to the terminal
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
                if proc.returncode != 0:
                    # one method that cannot run this case does not stop the others
                    print(f"{name:6} {size:>4} {precision:10} failed (exit {proc.returncode})")
                    failed.append(
                        {
                            "model": name,
                            "size": size,
                            "precision": precision,
                            "exit": proc.returncode,
                        }
                    )
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(r)
                g = r["generate"]
                key = "_cpu" if cpu else ""
                fps = "frames_per_cpu_s" if cpu else "frames_per_s"
                if r["train_error"] is None:
                    step = r["train_step_cpu_s"] if cpu else r["train_step_s"]
                    train = f"{step:>12.2f} {r['train_step_gflop']:>10.1f} {r['mfu' + key]:>6.1%}"
                else:
                    train = f"{'not timed':>12} {'-':>10} {'-':>6}"
                print(
                    f"{name:6} {size:>4} {precision:10} {train} | "
                    f"{g['gflop_per_frame']:>11.2f} {g['batch1'][fps]:>11.2f} "
                    f"{g['batch1']['mfu' + key]:>6.1%} {g['filling']['batch']:>6} "
                    f"{g['filling'][fps]:>8.2f} {g['filling']['mfu' + key]:>6.1%} "
                    f"{r['peak_memory_mib']:>9.0f}",
                    flush=True,
                )
                if r.get("perceptual_weights"):
                    print(f"{'':6} perceptual loss: {r['perceptual_weights']}", flush=True)
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
            "settings": {
                k: getattr(args, k)
                for k in (
                    "preset",
                    "batch",
                    "frames",
                    "gen_frames",
                    "max_gen_batch",
                    "min_gain",
                    "window",
                    "features",
                    "channels_last",
                )
            },
            "results": results,
            "failed": failed,
        },
    )
    print(f"wrote {out}")
    return 1 if failed and not results else 0


def _size(name: str, preset: str, size: str) -> int:
    """``size`` in pixels; ``preset``: the preset's own ``image_size``."""
    if size != "preset":
        return int(size)
    from talking_faces.training.runconfig import load_config

    return int(load_config([str(preset_path(name, preset))]).model.image_size)


def _passthrough(args: argparse.Namespace) -> list[str]:
    out = ["--preset", args.preset, "--device", args.device]
    out += ["--batch", str(args.batch), "--frames", *args.frames]
    out += ["--gen-frames", str(args.gen_frames), "--window", str(args.window)]
    out += ["--features", str(args.features), "--seconds", str(args.seconds)]
    out += ["--max-gen-batch", str(args.max_gen_batch), "--min-gain", str(args.min_gain)]
    if args.threads:
        out += ["--threads", str(args.threads)]
    if args.channels_last:
        out.append("--channels-last")
    return out


if __name__ == "__main__":
    os.environ.setdefault("TALKING_FACES_QUIET", "1")
    sys.exit(main())

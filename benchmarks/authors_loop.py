"""Training speed of the ldm authors' own code against this project's ldm paper preset.

The authors' code is Yadav et al. 2020 ("Stochastic talking face generation using latent
distribution matching", Interspeech), ``ry85/Stochastic-Talking-Face-Generation-Using-Latent-
Distribution-Matching``, in a checkout the user names with ``--authors``. Nothing of it is
copied into this project: a child process puts the checkout first on ``sys.path`` and runs their
files.

- **Theirs**: the top-level statements of their ``train.py`` up to the data set's construction
  (``VideoDataset(...)``) run in order, as their script runs them, with ``sys.argv`` set to their
  README's training command (``--batch_size 5 --lr 0.0002 --beta 0.000001 --z_dim 24 --model vgg
  --image_width 128 --data_threads 4``) plus ``--batch_size B --n_future T``: the argument parser,
  the seeds, their ``models/lstm.py`` frame predictor, posterior and prior, ``models/vgg_128.py``
  encoder and decoder, ``models/rnn_audio.py`` audio network, ``utils.init_weights``, the six
  RMSprop optimizers (and their ExponentialLR schedulers, never stepped), ``mse_criterion`` and
  ``kl_criterion``. Then their ``init_hidden`` and ``train`` functions are defined from the same
  file and ``train(x, y)`` is timed, the call their epoch loop makes for every batch: zero_grad,
  the per-time-step forward of encoder, audio network, posterior, prior, frame predictor and
  decoder, MSE + beta * KL, backward, the six optimizer steps. ``x`` and ``y`` come from their
  ``utils.normalize_frame`` / ``normalize_audio`` applied to random tensors of their loader's
  shapes: frames ``B,T,128,128,3`` in [0, 1] (``data_loader.py``'s ``load_frames``) and MFCC
  windows ``B,T,28,12`` (``load_audio``: 28 rows, c0 dropped). The statements they run in a
  temporary working directory (``train.py`` creates ``./log/...``); the data loading, the test-set
  plots and the epoch loop are not run. Imports whose names none of the statements run uses
  (cv2, dlib, librosa, pydub, progressbar, their ``data_loader``, ...: data loading and video
  writing only) are not executed; the JSON lists them.
- **Ours**: ``experiments/model/ldm.yaml`` built and batched with ``benchmarks/throughput.py``'s
  helpers (``build``, ``batch_for``), the identity being frame 0 of the window (the preset's
  ``data.identity: first-frame``), one training step timed in Lightning's own fit loop as
  ``talking-faces fit`` runs it (``training_step``: ``LDM.loss``, logging, backward, RMSprop
  step, zero_grad), fp32 (``32-true``) or ``--precision bf16-mixed``.

Run-time shims for their code on today's torch and libraries (nothing in their files is edited;
the JSON's ``shims`` lists those applied in the run):

- ``torch.nn.Module.cuda`` and ``torch.Tensor.cuda`` return the object itself (their code calls
  ``.cuda()`` on every network, on the criterion and in ``init_hidden``; the comparison is on CPU);
- ``utils.normalize_frame`` / ``normalize_audio`` get ``torch.FloatTensor`` where the training
  loop passes ``dtype = torch.cuda.FloatTensor``;
- ``skimage.measure.compare_psnr`` / ``compare_ssim`` (removed in scikit-image 0.18, imported by
  their ``utils.py`` for its evaluation helpers) point to ``skimage.metrics``'
  ``peak_signal_noise_ratio`` / ``structural_similarity``; should ``sklearn.manifold``,
  ``scipy.misc`` or ``skimage.measure`` not import at all, an empty stand-in module is put in
  their place (used by none of the code timed).

No Python 2 fix is needed: their code is Python 3.

Each side runs in its own process, one after the other, with one thread (``torch.set_num_threads
(1)``, ``OMP_NUM_THREADS=1``): ``--warmup`` untimed steps, then ``--steps`` timed ones. Reported
per side: seconds per step and CPU-seconds per step (process CPU time; medians of the timed
steps), trained frames per step (frames with a loss term: ``B x (T - 1)`` on both sides, frame 0
being the given reference), frames per second and per CPU-second, peak resident set of the child
(``ru_maxrss`` from ``os.wait4``), the network calls of one step (counted with forward pre-hooks
in the warm-up step) and the ratio ours / theirs in frames per CPU-second (the figure that other
jobs on a shared machine move least). Each step's kernel time (system CPU, part of its CPU time)
is reported too, and the load average before and after each side is recorded.

``--malloc`` runs both sides under each C allocator setting given (default: both, one after the
other; the ratio compares the two sides under the same setting): ``default``, glibc's own, which
serves every block above its mmap threshold (128 KiB, growing to 32 MiB) from fresh pages that
are faulted in on first touch and handed back when freed; ``tuned``, ``GLIBC_TUNABLES`` with
``glibc.malloc.mmap_max=0`` and a 2 GiB ``trim_threshold`` (freed memory is reused; the settings
``talking-faces fit`` and ``evaluate`` apply through ``talking_faces.utils.allocator``). The
setting decides this comparison: our step batches the whole window through the encoder and the
decoder, so its activations are hundreds of MiB each, always above the threshold, and under
glibc's defaults it spends over a third of its CPU time in the kernel faulting pages in; their
per-time-step tensors (batch 5) are mostly below the threshold once it has grown (about a tenth).

    .venv/bin/python benchmarks/authors_loop.py --authors /tmp/authors-ldm
    .venv/bin/python benchmarks/authors_loop.py --authors /tmp/authors-ldm --steps 1
    .venv/bin/python benchmarks/authors_loop.py --authors /tmp/authors-ldm \\
        --precision fp32 bf16-mixed --malloc tuned

Prints a table and writes ``benchmarks/results/authors_loop.json`` (or ``--out``). A path that is
not a checkout of their code gives one error line and exit code 2.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: files of the authors' checkout this benchmark runs
REQUIRED = ("train.py", "utils.py", "models/lstm.py", "models/vgg_128.py", "models/rnn_audio.py")
#: their README's training command (its ``CUDA_VISIBLE_DEVICES=0 python3 train.py`` dropped)
README_ARGS = [
    "--batch_size",
    "5",
    "--lr",
    "0.0002",
    "--beta",
    "0.000001",
    "--z_dim",
    "24",
    "--model",
    "vgg",
    "--image_width",
    "128",
    "--data_threads",
    "4",
]
SIZE = 128
#: their loader's MFCC window: 28 rows of 12 coefficients (c0 dropped)
AUDIO_WINDOW, AUDIO_FEATURES = 28, 12
#: the six networks of their train.py, by their variable names
AUTHORS_NETS = ("encoder", "decoder", "audio_encoder", "posterior", "prior", "frame_predictor")
PRECISIONS = ("fp32", "bf16-mixed")
#: the modules their utils.py imports for its evaluation and plotting helpers only: a stand-in
#: replaces one that does not import, and missing names get an alias or a placeholder
UTILS_ONLY_IMPORTS = {
    "sklearn.manifold": ("TSNE",),
    "scipy.misc": (),
    "skimage.measure": ("compare_psnr", "compare_ssim"),
}
#: removed scikit-image names -> their replacements in skimage.metrics
SKIMAGE_RENAMED = {
    "compare_psnr": "peak_signal_noise_ratio",
    "compare_ssim": "structural_similarity",
}


class CheckoutError(Exception):
    """``--authors`` is not a usable checkout of the authors' code (exit code 2)."""


def check_checkout(path: Path) -> None:
    """Raise :class:`CheckoutError` unless ``path`` holds the files this benchmark runs."""
    if not path.exists():
        raise CheckoutError(f"--authors {path}: no such directory")
    if not path.is_dir():
        raise CheckoutError(f"--authors {path}: not a directory")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise CheckoutError(
            f"--authors {path}: not a checkout of ry85/Stochastic-Talking-Face-Generation-Using-"
            f"Latent-Distribution-Matching (missing {', '.join(missing)})"
        )


def checkout_commit(path: Path) -> str | None:
    """The checkout's HEAD commit, or None when it is not a git work tree."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def progress(side: str, message: str) -> None:
    print(f"[{side}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- shared by both sides
class CallCounter:
    """Forward calls and input rows of named modules (forward pre-hooks), until :meth:`close`."""

    def __init__(self, modules: dict[str, Any]) -> None:
        self.calls = {name: 0 for name in modules}
        self.rows = {name: 0 for name in modules}
        self.handles = [m.register_forward_pre_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name: str):
        def hook(module, args) -> None:
            self.calls[name] += 1
            self.rows[name] += _rows(args)

        return hook

    def close(self) -> dict[str, dict[str, int]]:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        return {n: {"calls": self.calls[n], "rows": self.rows[n]} for n in self.calls}


def _rows(value: Any) -> int:
    """Leading size of the first tensor in ``value`` (nested lists and tuples searched)."""
    if hasattr(value, "shape"):
        return int(value.shape[0]) if len(value.shape) else 1
    if isinstance(value, (list, tuple)):
        for item in value:
            n = _rows(item)
            if n:
                return n
    return 0


class StepClock:
    """Wall-clock, process CPU and kernel (system CPU) seconds of each step; the ``warmup`` first
    steps are reported as progress but not kept."""

    def __init__(self, side: str, warmup: int, total: int) -> None:
        self.side, self.warmup, self.total = side, warmup, total
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.kernel: list[float] = []
        self._start = (0.0, 0.0, 0.0)

    def start(self) -> None:
        self._start = (time.perf_counter(), time.process_time(), os.times().system)

    def stop(self, n: int) -> None:
        """End step ``n`` (0-based)."""
        wall = time.perf_counter() - self._start[0]
        cpu = time.process_time() - self._start[1]
        kernel = os.times().system - self._start[2]
        kind = "warm-up" if n < self.warmup else "timed"
        progress(
            self.side,
            f"step {n + 1}/{self.total} ({kind}): {wall:.2f} s, {cpu:.2f} CPU-s "
            f"({kernel:.2f} in the kernel)",
        )
        if n >= self.warmup:
            self.wall.append(wall)
            self.cpu.append(cpu)
            self.kernel.append(kernel)

    def summary(self, frames: int) -> dict[str, Any]:
        """Medians of the timed steps and the rates they give."""
        step, step_cpu = statistics.median(self.wall), statistics.median(self.cpu)
        return {
            "step_s": step,
            "step_cpu_s": step_cpu,
            "step_kernel_s": statistics.median(self.kernel),
            "steps_s": self.wall,
            "steps_cpu_s": self.cpu,
            "steps_kernel_s": self.kernel,
            "frames_per_step": frames,
            "frames_per_s": frames / step,
            "frames_per_cpu_s": frames / max(step_cpu, 1e-9),
        }


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # only before any parallel work started
        torch.set_num_interop_threads(1)


# ------------------------------------------------------------------------------ the authors' side
def apply_shims() -> list[str]:
    """Make their code run on today's torch and libraries, on CPU; returns what was done."""
    import torch

    shims = []
    # scipy.misc and their utils.py's old-API imports warn on import; the warnings say nothing
    # about the step timed
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    def module_cuda(self, device=None):
        return self

    def tensor_cuda(self, *args, **kwargs):
        return self

    torch.nn.Module.cuda = module_cuda  # type: ignore[method-assign]
    torch.Tensor.cuda = tensor_cuda  # type: ignore[method-assign]
    shims.append(
        "torch.nn.Module.cuda and torch.Tensor.cuda return the object itself (CPU run): their "
        "train.py calls .cuda() on the six networks and the criterion, init_hidden on its states"
    )
    for name, attrs in UTILS_ONLY_IMPORTS.items():
        try:
            module = __import__(name, fromlist=["_"])
        except ImportError as exc:
            module = _stand_in(name)
            shims.append(
                f"{name} does not import here ({exc}): an empty stand-in module for their "
                "utils.py's import (its evaluation/plotting helpers only; not in the timed step)"
            )
        for attr in attrs:
            if hasattr(module, attr):
                continue
            new = SKIMAGE_RENAMED.get(attr) if name == "skimage.measure" else None
            if new is not None:
                with contextlib.suppress(ImportError, AttributeError):
                    import skimage.metrics

                    setattr(module, attr, getattr(skimage.metrics, new))
                    shims.append(
                        f"skimage.measure.{attr} = skimage.metrics.{new} (removed in "
                        "scikit-image 0.18; imported by their utils.py for its evaluation "
                        "helpers, not used in the timed step)"
                    )
                    continue
            setattr(module, attr, _placeholder(f"{name}.{attr}"))
            shims.append(
                f"{name}.{attr}: a placeholder that raises if called (missing here; imported by "
                "their utils.py, not used in the timed step)"
            )
    return shims


def _stand_in(name: str) -> types.ModuleType:
    """An empty module registered as ``name`` (and as the attribute of its parent package)."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        try:
            setattr(__import__(parent, fromlist=["_"]), child, module)
        except ImportError:
            setattr(_stand_in(parent), child, module)
    return module


def _placeholder(name: str):
    def missing(*args, **kwargs):
        raise NotImplementedError(f"{name} is not available (authors_loop.py stand-in)")

    return missing


def _calls(node: ast.AST, func: str) -> bool:
    """Whether ``node`` contains a call of the plain name ``func``."""
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == func
        for n in ast.walk(node)
    )


def train_py_plan(source: str, filename: str) -> tuple[list[ast.stmt], list[str]]:
    """The statements of their train.py to run, in order, and the imports left out.

    Every top-level statement before the data set's construction runs (imports only when a
    statement run uses a name they bind); of the rest, only the definitions of ``init_hidden``
    and ``train``.
    """
    body = ast.parse(source, filename=filename).body
    cut = next((i for i, s in enumerate(body) if _calls(s, "VideoDataset")), None)
    if cut is None:
        raise CheckoutError(f"{filename} builds no VideoDataset: not the authors' train.py")
    defs = {s.name: s for s in body[cut:] if isinstance(s, ast.FunctionDef)}
    missing = [name for name in ("init_hidden", "train") if name not in defs]
    if missing:
        raise CheckoutError(f"{filename} defines no {', '.join(missing)}()")
    imports = (ast.Import, ast.ImportFrom)
    code = [s for s in body[:cut] if not isinstance(s, imports)]
    code += [defs["init_hidden"], defs["train"]]
    used = {n.id for s in code for n in ast.walk(s) if isinstance(n, ast.Name)}
    plan: list[ast.stmt] = []
    left_out: list[str] = []
    for stmt in body[:cut]:
        if isinstance(stmt, imports):
            bound = {(a.asname or a.name).split(".")[0] for a in stmt.names}
            if not bound & used:
                left_out.append(ast.get_source_segment(source, stmt) or ast.unparse(stmt))
                continue
        plan.append(stmt)
    return plan + [defs["init_hidden"], defs["train"]], left_out


def authors_case(args: argparse.Namespace) -> dict[str, Any]:
    """Their networks, optimizers and ``train`` from their train.py; ``train(x, y)`` timed."""
    _one_thread()
    import torch

    path = Path(args.authors).resolve()
    check_checkout(path)
    shims = apply_shims()
    train_file = path / "train.py"
    plan, left_out = train_py_plan(train_file.read_text(), str(train_file))
    argv = [*README_ARGS, "--batch_size", str(args.batch), "--n_future", str(args.frames)]
    sys.path.insert(0, str(path))
    ns: dict[str, Any] = {"__name__": "__authors_train__", "__file__": str(train_file)}
    log = io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    progress("authors", f"running their train.py up to the data set ({len(plan)} statements)")
    with tempfile.TemporaryDirectory(prefix="authors-loop-") as work:
        try:
            sys.argv = [str(train_file), *argv]
            os.chdir(work)
            with contextlib.redirect_stdout(log):
                for stmt in plan:
                    exec(
                        compile(ast.Module(body=[stmt], type_ignores=[]), str(train_file), "exec"),
                        ns,
                    )
        finally:
            sys.argv = old_argv
            os.chdir(old_cwd)
    for name in ("utils", "lstm_models", "model", "aud_enc"):
        origin = getattr(ns.get(name), "__file__", None) or ""
        if not Path(origin).resolve().is_relative_to(path):
            raise CheckoutError(
                f"their module {name!r} came from {origin or '?'}, not from {path} (a module of "
                "that name elsewhere on sys.path shadows theirs)"
            )
    opt, utils = ns["opt"], ns["utils"]
    nets = {name: ns[name] for name in AUTHORS_NETS}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in nets.items()}
    progress(
        "authors",
        f"built {ns['model'].__name__}.encoder/decoder, {ns['aud_enc'].__name__}.RNN, lstm x3: "
        f"{sum(params.values()):,} parameters",
    )

    g = torch.Generator().manual_seed(0)
    b, t, size = opt.batch_size, opt.n_future, opt.image_width
    # what their DataLoader yields (audio_seq, mfcc_seq, frame_seq); the loop converts with
    # utils.normalize_frame / normalize_audio and dtype torch.cuda.FloatTensor (CPU here)
    frame_seq = torch.rand(b, t, size, size, opt.channels, generator=g)
    mfcc_seq = torch.randn(b, t, AUDIO_WINDOW, AUDIO_FEATURES, generator=g)
    loader_shapes = {"frame_seq": list(frame_seq.shape), "mfcc_seq": list(mfcc_seq.shape)}
    # (normalize_frame and normalize_audio transpose their argument in place)
    x = utils.normalize_frame(opt, torch.FloatTensor, frame_seq)
    y = utils.normalize_audio(opt, torch.FloatTensor, mfcc_seq)
    shims.append(
        "utils.normalize_frame / normalize_audio called with dtype torch.FloatTensor where their "
        "training loop passes torch.cuda.FloatTensor"
    )
    for m in nets.values():  # their epoch loop's .train() calls
        m.train()

    train = ns["train"]
    losses: list[list[float]] = []
    counter = CallCounter(nets)
    total = args.warmup + args.steps
    clock = StepClock("authors", args.warmup, total)
    for n in range(total):
        clock.start()
        mse, kld = train(x, y)  # their epoch loop's call for every batch
        clock.stop(n)
        if n == 0:
            calls = counter.close()
        losses.append([float(mse), float(kld)])
    trained = b * len(range(1, opt.n_future))  # their train(): frames 1 .. n_future-1
    return {
        "side": "authors",
        "precision": "fp32",
        "checkout": str(path),
        "commit": checkout_commit(path),
        "argv": argv,
        "opt": {
            k: getattr(opt, k)
            for k in (
                "batch_size",
                "n_future",
                "image_width",
                "channels",
                "model",
                "g_dim",
                "z_dim",
                "rnn_size",
                "prior_rnn_layers",
                "posterior_rnn_layers",
                "predictor_rnn_layers",
                "beta",
                "lr",
                "seed",
            )
        },
        "input_shapes": {
            **loader_shapes,
            "x": f"{len(x)} x {list(x[0].shape)}",
            "y": f"{len(y)} x {list(y[0].shape)}",
        },
        "params": params,
        "params_total": sum(params.values()),
        "calls_per_step": calls,
        "losses": {"mse_kld_per_step": losses},
        "their_stdout": log.getvalue().splitlines(),
        "imports_not_run": left_out,
        "shims": shims,
        "threads": torch.get_num_threads(),
        **clock.summary(trained),
    }


# ------------------------------------------------------------------------------------ our side
def ours_case(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    """The ldm paper preset's training step in Lightning's fit loop (benchmarks/throughput.py's
    model and batch helpers)."""
    _one_thread()
    import logging

    import lightning as L
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import batch_for, build, fit_repeated, preset_path

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    torch.manual_seed(0)
    model = build("ldm", "paper", SIZE, AUDIO_WINDOW, AUDIO_FEATURES)
    c = model.config
    nets = model.networks()
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in nets.items()}
    progress(
        "ours",
        f"built ldm from {preset_path('ldm', 'paper').relative_to(ROOT)}: "
        f"{sum(params.values()):,} parameters, {precision}",
    )
    batch = batch_for(args.batch, args.frames, SIZE, c.audio_window, c.audio_features, "cpu")
    batch["identity"] = batch["frames"][:, 0].clone()  # data.identity: first-frame
    total = args.warmup + args.steps
    counter = CallCounter(nets)
    calls: dict[str, dict[str, int]] = {}

    clock = StepClock("ours", args.warmup, total)

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            clock.start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            clock.stop(batch_idx)
            if batch_idx == 0:
                calls.update(counter.close())
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.losses.append(float(loss))

    timer = StepTimer()
    lightning_precision = "32-true" if precision == "fp32" else "bf16-mixed"
    fit_repeated(model, batch, total, "cpu", lightning_precision, [timer])
    t = args.frames - 1 if c.first_frame_given else args.frames
    return {
        "side": "ours",
        "precision": precision,
        "preset": str(preset_path("ldm", "paper").relative_to(ROOT)),
        # what LDM.loss reads of the batch
        "input_shapes": {k: list(batch[k].shape) for k in ("frames", "identity", "audio")},
        "params": params,
        "params_total": sum(params.values()),
        "calls_per_step": calls,
        "losses": {"loss_per_step": timer.losses},
        "threads": torch.get_num_threads(),
        **clock.summary(args.batch * t),
    }


# ---------------------------------------------------------------------------------- the parent
#: ``--malloc tuned``: glibc's allocator with no mmap for ordinary blocks and up to 2 GiB of freed
#: memory kept at the top of the heap (the settings of talking_faces.utils.allocator's
#: tune_allocator, which ``talking-faces fit`` and ``evaluate`` apply), given to both children
TUNED_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"
MALLOC = {
    "default": (
        "glibc's defaults: blocks above the mmap threshold (128 KiB, growing to 32 MiB) come from "
        "fresh mmap pages, faulted in on first touch, and go back to the kernel when freed "
        "(TALKING_FACES_MALLOC=default, so nothing in this project tunes it)"
    ),
    "tuned": f"GLIBC_TUNABLES={TUNED_TUNABLES} (freed blocks reused, not faulted in again)",
}


def child_env(malloc: str) -> dict[str, str]:
    """The environment of a child: one thread, and the allocator setting ``malloc``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TALKING_FACES_QUIET="1")
    if malloc == "default":
        env["TALKING_FACES_MALLOC"] = "default"
    else:
        kept = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
        kept = [t for t in kept if not t.startswith("glibc.malloc.")]
        env["GLIBC_TUNABLES"] = ":".join([*kept, TUNED_TUNABLES])
    return env


def allocator_env(env: dict[str, str]) -> dict[str, str]:
    """The variables of ``env`` that set the C allocator (recorded with each result)."""
    keys = ("GLIBC_TUNABLES", "LD_PRELOAD", "TALKING_FACES_MALLOC")
    return {k: v for k, v in sorted(env.items()) if k in keys or k.startswith("MALLOC_")}


def run_child(
    args: argparse.Namespace, side: str, precision: str, malloc: str
) -> tuple[int, dict | None]:
    """One side in a child process: (exit status, its result with ``peak_rss_mib`` added)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side]
    cmd += ["--authors", str(args.authors), "--batch", str(args.batch)]
    cmd += ["--frames", str(args.frames), "--warmup", str(args.warmup)]
    cmd += ["--steps", str(args.steps), "--precision", precision]
    env = child_env(malloc)
    load_before = os.getloadavg()
    # the child's stderr (progress, or why it failed) goes to the terminal
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return proc.returncode, None
    result = json.loads(out.strip().splitlines()[-1])
    result["malloc"] = malloc
    result["allocator_env"] = allocator_env(env)
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    result["process_kernel_s"] = usage.ru_stime
    result["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    return 0, result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--authors", required=True, help="a checkout of the authors' repository")
    p.add_argument("--batch", type=int, default=5, help="clips per step (default 5, theirs)")
    p.add_argument("--frames", type=int, default=10, help="frames per clip (default 10)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per side (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument(
        "--precision",
        nargs="+",
        default=["fp32"],
        choices=PRECISIONS,
        help="our side's precision(s); theirs is fp32 (their code has no mixed precision)",
    )
    p.add_argument(
        "--malloc",
        nargs="+",
        default=list(MALLOC),
        choices=list(MALLOC),
        help="the C allocator setting(s), the same for both sides (default: both)",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "authors_loop.json"))
    p.add_argument("--child", choices=["authors", "ours"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, low in (("batch", 1), ("frames", 2), ("steps", 1), ("warmup", 0)):
        if getattr(args, name) < low:
            p.error(f"--{name} must be at least {low}")
    args.precision = list(dict.fromkeys(args.precision))
    args.malloc = list(dict.fromkeys(args.malloc))
    return args


def child(args: argparse.Namespace) -> int:
    try:
        if args.child == "authors":
            result = authors_case(args)
        else:
            result = ours_case(args, args.precision[0])
    except CheckoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def _label(r: dict) -> str:
    return "authors fp32" if r["side"] == "authors" else f"ours {r['precision']}"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        return child(args)
    authors = Path(args.authors).expanduser()
    try:
        if not args.authors.strip():
            raise CheckoutError("--authors is empty: give the path of a checkout of their code")
        check_checkout(authors)
    except CheckoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.authors = str(authors.resolve())
    import torch

    cases = [
        (malloc, side, precision)
        for malloc in args.malloc
        for side, precision in [("authors", "fp32"), *[("ours", p) for p in args.precision]]
    ]
    runs: list[dict] = []
    for n, (malloc, side, precision) in enumerate(cases, 1):
        what = "their train.py's train()" if side == "authors" else f"our ldm preset, {precision}"
        print(
            f"[{n}/{len(cases)}] {what}, malloc {malloc}: batch {args.batch} x {args.frames} "
            f"frames, {SIZE} px, 1 thread, {args.warmup} warm-up + {args.steps} timed steps",
            file=sys.stderr,
            flush=True,
        )
        code, result = run_child(args, side, precision, malloc)
        if code == 2:  # not a checkout of their code: the child said why, in one line
            return 2
        if code != 0:
            print(
                f"error: the {side} side ({precision}, malloc {malloc}) failed (exit {code})",
                file=sys.stderr,
            )
            return 1
        assert result is not None
        if side == "authors":
            runs.append({"malloc": malloc, "authors": result, "ours": []})
        else:
            runs[-1]["ours"].append(result)
    for run in runs:
        theirs = run["authors"]
        run["ratio_ours_over_theirs"] = {
            r["precision"]: {
                "frames_per_cpu_s": r["frames_per_cpu_s"] / theirs["frames_per_cpu_s"],
                "frames_per_s": r["frames_per_s"] / theirs["frames_per_s"],
            }
            for r in run["ours"]
        }

    print(
        f"\n{'side':16} {'malloc':8} {'s/step':>8} {'CPU-s/step':>10} {'kernel s':>8} "
        f"{'frames/step':>11} {'frames/CPU-s':>12} {'peak RSS MiB':>12} {'ours/theirs':>11}"
    )
    for run in runs:
        for r in [run["authors"], *run["ours"]]:
            ratio = (
                run["ratio_ours_over_theirs"].get(r["precision"]) if r["side"] == "ours" else None
            )
            shown = f"{ratio['frames_per_cpu_s']:.2f}x" if ratio else "-"
            print(
                f"{_label(r):16} {run['malloc']:8} {r['step_s']:>8.2f} {r['step_cpu_s']:>10.2f} "
                f"{r['step_kernel_s']:>8.2f} {r['frames_per_step']:>11} "
                f"{r['frames_per_cpu_s']:>12.2f} {r['peak_rss_mib']:>12.0f} {shown:>11}"
            )
    print(
        "medians of the timed steps; kernel s: the step's system CPU time (in CPU-s/step); "
        "ours/theirs: frames per CPU-second, same malloc setting"
    )

    from talking_faces.utils.hardware import cpu_name
    from talking_faces.utils.io import write_json_atomic

    out = Path(args.out)
    write_json_atomic(
        out,
        {
            "benchmark": "authors_loop",
            "machine": {
                "cpu": cpu_name(),
                "cores": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            "settings": {
                "batch": args.batch,
                "frames": args.frames,
                "size": SIZE,
                "threads": 1,
                "warmup": args.warmup,
                "steps": args.steps,
                "precision_ours": args.precision,
                "malloc": args.malloc,
                "statistic": "median of the timed steps",
            },
            "malloc_settings": {m: MALLOC[m] for m in args.malloc},
            "runs": runs,
            "shims": runs[0]["authors"]["shims"],
            "ratio_ours_over_theirs": {
                f"{p}, malloc {run['malloc']}": v["frames_per_cpu_s"]
                for run in runs
                for p, v in run["ratio_ours_over_theirs"].items()
            },
            "load_average": {
                f"{_label(r)}, malloc {run['malloc']}": r["load_average"]
                for run in runs
                for r in [run["authors"], *run["ours"]]
            },
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

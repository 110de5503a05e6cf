"""One training run: run folder, datamodule, model, loggers, trainer, resume.

config (:func:`talking_faces.training.runconfig.load_config`) -> **fit** -> run folder
``out/name/``:

- ``config.yaml``: the resolved config (rewritten when a run is resumed; earlier ones are kept as
  ``config.<n>.yaml``)
- ``git.json``: commit of the code that ran (and whether the tree had uncommitted changes)
- ``checkpoints/last.ckpt`` and ``checkpoints/best-<step>.ckpt`` (best by ``checkpoint.monitor``)
- ``metrics.csv`` (always; a resumed run appends to it), ``fit.log`` (Lightning's log lines)
- ``samples/*.mp4``: real | generated (| the method's debug panels) with the audio muxed, every
  ``logger.sample_every_n_val`` validations; also sent to W&B when ``logger.wandb=true``
- ``wandb/`` (offline unless ``WANDB_MODE`` says otherwise; the W&B run is finished when fit
  ends, which writes its summary and config), ``tensorboard/`` when asked for.

When the prepared dataset holds a trained landmark expert (``<data.root>/experts/landmarks.ckpt``),
methods also log ``val/lmd`` (mouth LMD of their validation samples), which ``checkpoint.monitor``
may then name.

``ckpt_path=last`` continues the run folder's ``last.ckpt`` (or starts from step 0 if the run
never wrote one), so a killed job can be restarted with the same command plus ``ckpt_path=last``.
Checkpoints are written atomically and carry the resolved run config, the dataset's ``meta.json``
(what ``talking-faces generate`` prepares new inputs with) and the model's training-noise
generator, so a resumed single-process run ends with the same weights as an uninterrupted one.
Under DDP, every rank runs this module (Lightning's launcher re-executes the command, or torchrun
/ SLURM's srun start every process, ``trainer.num_nodes`` nodes of ``trainer.devices``); only
global rank 0 (:func:`~talking_faces.utils.distributed.global_rank_from_env`) writes the run
folder, and the other ranks wait until it exists. With several nodes, ``out`` must be on a file
system every node sees (NFS, Lustre, ... as on SLURM clusters): the others wait for rank 0's folder
and every rank reads ``ckpt_path=last`` from it. Each rank's training-noise generator is saved for
every rank (:mod:`talking_faces.training.resume`), so a resumed DDP run equals an uninterrupted one
too.

Loggers are built in :mod:`talking_faces.training.loggers`, callbacks and the checkpoint writer live
in :mod:`talking_faces.training.callbacks`. Methods trained with several optimizers (manual
optimization) get DDP with ``find_unused_parameters`` (each optimizer step touches one network
group) and refuse the trainer's global gradient clipping and accumulation (they clip per group:
``model.clip_grad_norm`` or ``model.optim.<group>.clip_grad_norm``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from talking_faces.config.schema import require_complete, to_dict, to_yaml
from talking_faces.errors import UserError
from talking_faces.names import (
    CHECKPOINTS_DIR,
    EXPERTS_DIR,
    LAST_CHECKPOINT,
    RUN_CONFIG_FILE,
    expert_file,
)
from talking_faces.training.callbacks import (
    AtomicCheckpointIO,
    RunInfo,
    SampleVideos,
    StepCheckpoint,
    StepProgressBar,
)
from talking_faces.training.loggers import build_loggers, check_loggers, finish_loggers
from talking_faces.training.resume import RankGeneratorStates
from talking_faces.utils.allocator import tune_allocator
from talking_faces.utils.distributed import global_rank_from_env
from talking_faces.utils.hardware import cpu_name, resolve_precision
from talking_faces.utils.io import write_json_atomic, write_text_atomic
from talking_faces.utils.provenance import git_info

if TYPE_CHECKING:
    from talking_faces.data import TalkingFaceDataModule

log = logging.getLogger("talking_faces.training.fit")


class _DropAdvertising(logging.Filter):
    """Lightning prints a tip to install its cloud logger on every run; keep it out of our logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropAdvertising())


@contextlib.contextmanager
def _without_unactionable_warnings(cfg: DictConfig) -> Iterator[None]:
    """Hide, while training, the warnings Lightning raises that a user cannot act on.

    Scoped to the block rather than set at import, so they stay hidden wherever ``fit`` runs (a
    test runner resets the process-wide filters between tests) and other code keeps its own.
    """
    with warnings.catch_warnings():
        # Our training data is LitData's StreamingDataset, whose __len__ is per rank and which
        # gives every worker its own share: what Lightning's generic warning asks for.
        warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined")
        # Lightning's own use of a torch pytree API that torch deprecated.
        warnings.filterwarnings(
            "ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated"
        )
        # With several optimizers (manual optimization) Lightning warns that periodic checkpoints
        # hold the weights after the step's optimizer updates: what a checkpoint at step N is.
        warnings.filterwarnings(
            "ignore", message=r"Using ModelCheckpoint with manual optimization and every_n_train"
        )
        t = cfg.trainer
        if t.max_steps and t.log_every_n_steps and t.max_steps >= t.log_every_n_steps:
            # Lightning warns when an epoch has fewer batches than log_every_n_steps, but it
            # counts the interval in steps across epochs: a run of at least that many steps logs
            # every log_every_n_steps steps all the same (small datasets have short epochs).
            warnings.filterwarnings(
                "ignore", message=r"The number of training batches \(\d+\) is smaller than the"
            )
        if cfg.ckpt_path is not None:
            # a resumed run continues in its own checkpoint folder (a new run refuses an
            # existing one, prepare_run_dir): that the folder holds checkpoints is expected
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
        yield


#: model config fields that fit fills from the data (when the method has them)
DATA_FIELDS = ("image_size", "audio_window", "audio_features", "num_words", "num_speakers")


def _checkpoint_step(path: str | None) -> int | None:
    if path is None:
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return int(ckpt.get("global_step", 0))


# ------------------------------------------------------------------------------- run folder
def run_dir_of(cfg: DictConfig) -> Path:
    """``out/name`` (``name`` defaults to ``model.name``)."""
    return Path(cfg.out) / (cfg.name or cfg.model.name)


def resolve_ckpt(cfg: DictConfig, run_dir: Path) -> str | None:
    """The checkpoint to resume from (``ckpt_path``: None, ``last`` or a path), or None."""
    if cfg.ckpt_path is None:
        return None
    if cfg.ckpt_path == "last":
        last = run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT
        return str(last) if last.is_file() else None
    path = Path(cfg.ckpt_path)
    if not path.is_file():
        raise UserError(f"ckpt_path {path} does not exist; pass a .ckpt file or ckpt_path=last")
    return str(path)


def prepare_run_dir(cfg: DictConfig, run_dir: Path, resuming: bool) -> None:
    """Create (or reopen, when resuming) the run folder and write config and git info."""
    old = run_dir / RUN_CONFIG_FILE
    if not resuming and cfg.ckpt_path is None and old.exists():
        raise UserError(
            f"run folder {run_dir} already exists; resume it with ckpt_path=last or pick "
            "another name=..."
        )
    (run_dir / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
    if old.exists():
        n = 1
        while old.with_name(f"{old.stem}.{n}{old.suffix}").exists():
            n += 1
        os.replace(old, old.with_name(f"{old.stem}.{n}{old.suffix}"))
    write_text_atomic(old, to_yaml(cfg))
    write_json_atomic(run_dir / "git.json", git_info())


# ------------------------------------------------------------------------------- components
def build_datamodule(cfg: DictConfig) -> TalkingFaceDataModule:
    """:class:`talking_faces.data.TalkingFaceDataModule` from ``cfg.data`` and ``cfg.seed``."""
    from talking_faces.data import TalkingFaceDataModule

    d = cfg.data
    return TalkingFaceDataModule(
        root=d.root,
        num_frames=d.num_frames,
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        identity=d.identity,
        audio_feature=d.audio_feature,
        audio_window=d.audio_window,
        audio_pad=d.audio_pad,
        drop_c0=d.drop_c0,
        seed=cfg.seed,
        train_split=d.train_split,
        val_split=d.val_split,
        test_split=d.test_split,
        pin_memory=d.pin_memory,
        cache_dir=d.cache_dir,
    )


def data_shapes(cfg: DictConfig, datamodule: Any) -> dict[str, int]:
    """:data:`DATA_FIELDS` of the batches ``datamodule`` makes: crop size, audio window shape,
    and the sizes of the word and speaker vocabularies (``meta.json``'s ``words``/``speakers``)."""
    return {
        "image_size": int(datamodule.image_size),
        "audio_window": int(cfg.data.audio_window),
        "audio_features": int(datamodule.audio_dim),
        "num_words": len(datamodule.words),
        "num_speakers": len(datamodule.speakers),
    }


def fill_model_shapes(cfg: DictConfig, shapes: Mapping[str, int]) -> None:
    """Set the model's :data:`DATA_FIELDS` from the data (in place).

    A value set in the config that disagrees with the data is a :class:`UserError`.
    """
    for key, value in shapes.items():
        if key not in cfg.model:
            continue
        given = cfg.model[key]
        if given is None:
            cfg.model[key] = value
        elif int(given) != int(value):
            raise UserError(
                f"model.{key}={given} but the dataset {cfg.data.root} gives {value}; set "
                f"model.{key}={value} (or null to take it from the data)"
            )


#: the landmark expert's file in ``PREP/experts/`` (as :func:`talking_faces.names.expert_file`)
_LANDMARK_EXPERT_FILE = Path(expert_file("PREP", "landmarks")).name


def attach_landmark_expert(model: L.LightningModule, cfg: DictConfig) -> str | None:
    """Give a method the dataset's landmark expert for ``val/lmd``; return its path, or None.

    Only for talking-face methods, and only when ``<data.root>/experts/landmarks.ckpt`` exists
    (``talking-faces fit experiments/experts/landmarks.yaml data.root=...`` writes it; for an
    ``s3://`` dataset it is fetched to the local cache, see :mod:`talking_faces.data.storage`).
    """
    from talking_faces.data import storage
    from talking_faces.models import TalkingFaceModule

    root = str(cfg.data.root)
    if not isinstance(model, TalkingFaceModule):
        return None
    if storage.is_remote(root) and not root.startswith("s3://"):
        return None  # experts are fetched from s3:// datasets only
    from talking_faces.registry import load_expert

    path = storage.fetch_dataset_file(root, EXPERTS_DIR, _LANDMARK_EXPERT_FILE)
    if path is None:
        return None
    expert, _ = load_expert(path, "landmarks")
    model.attach_landmark_model(expert)
    return storage.join(root, EXPERTS_DIR, _LANDMARK_EXPERT_FILE)


#: fields of the ``trainer`` config section that are not ``lightning.Trainer`` arguments
NOT_TRAINER_ARGS = ("channels_last",)


def build_trainer(
    cfg: DictConfig,
    run_dir: Path,
    loggers: list[Logger],
    extra_callbacks: list[Callback] | None = None,
    manual_optimization: bool = False,
    dataset_meta: Mapping[str, Any] | None = None,
) -> L.Trainer:
    """``lightning.Trainer`` from ``cfg.trainer`` with the run folder's checkpoints.

    Every field of ``cfg.trainer`` but :data:`NOT_TRAINER_ARGS` is passed to the Trainer as it
    is, except ``strategy`` (see :func:`trainer_strategy`); the framework adds the callbacks,
    loggers, run folder, atomic checkpoint writer and progress display.
    ``manual_optimization``: the model steps several optimizers itself (see the module
    docstring for what changes). ``dataset_meta``: the prepared dataset's ``meta.json``, saved
    in every checkpoint beside the run config. The progress bar counts steps of
    ``trainer.max_steps`` (:class:`~talking_faces.training.callbacks.StepProgressBar`).
    """
    container = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(container, dict)
    args = cast("dict[str, Any]", container)  # a config section's keys are str
    for key in NOT_TRAINER_ARGS:
        args.pop(key, None)
    args["strategy"] = trainer_strategy(cfg, manual_optimization)
    quiet = os.environ.get("TALKING_FACES_QUIET") == "1"
    callbacks = build_callbacks(cfg, run_dir, extra_callbacks, dataset_meta)
    if not quiet:
        callbacks.append(StepProgressBar())
    try:
        return L.Trainer(
            **args,
            callbacks=callbacks,
            logger=loggers,
            default_root_dir=str(run_dir),
            plugins=[AtomicCheckpointIO()],
            enable_progress_bar=not quiet,
            enable_model_summary=not quiet,
        )
    except (MisconfigurationException, ValueError) as exc:
        raise UserError(f"trainer config: {str(exc).splitlines()[0]}") from None


def trainer_strategy(cfg: DictConfig, manual_optimization: bool) -> Any:
    """``trainer.strategy``, with unused parameters allowed under DDP for a model that steps
    several optimizers itself, after refusing the trainer settings such a model cannot honour."""
    t = cfg.trainer
    strategy: Any = t.strategy
    if not manual_optimization:
        return strategy
    if t.gradient_clip_val:
        raise UserError(
            f"model '{cfg.model.name}' trains several networks with their own optimizers; "
            "clip per network group with model.clip_grad_norm (all groups) or "
            "model.optim.<group>.clip_grad_norm instead of trainer.gradient_clip_val"
        )
    if t.accumulate_grad_batches != 1:
        raise UserError(
            f"model '{cfg.model.name}' steps its optimizers itself: "
            "trainer.accumulate_grad_batches must be 1 (raise data.batch_size instead)"
        )
    several = str(t.devices) not in ("1", "cpu") or t.num_nodes > 1
    if strategy == "ddp" or (strategy == "auto" and several):
        # each optimizer step touches one network group: the others get no gradient
        return "ddp_find_unused_parameters_true"
    if strategy == "ddp_spawn":
        return "ddp_spawn_find_unused_parameters_true"
    return strategy


def build_callbacks(
    cfg: DictConfig,
    run_dir: Path,
    extra_callbacks: list[Callback] | None = None,
    dataset_meta: Mapping[str, Any] | None = None,
) -> list[Callback]:
    """The run's callbacks (without the progress bar): the best and last checkpoints, the run
    config and dataset meta in them, every rank's training-noise generator, then ``extra``."""
    ckdir = run_dir / CHECKPOINTS_DIR
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=ckdir,
            filename="best-{step:07d}",
            monitor=cfg.checkpoint.monitor,
            mode=cfg.checkpoint.mode,
            save_top_k=cfg.checkpoint.save_top_k,
            # one writer of last.ckpt: with a step interval the periodic callback below owns it
            # (two callbacks saving "last" make Lightning write last-v1.ckpt beside it)
            save_last=not cfg.checkpoint.every_n_train_steps,
            auto_insert_metric_name=False,
        ),
        RunInfo(to_dict(cfg), dataset_meta),
        RankGeneratorStates(),
    ]
    if cfg.checkpoint.every_n_train_steps:
        callbacks.append(
            StepCheckpoint(
                dirpath=ckdir,
                save_top_k=0,
                save_last=True,
                every_n_train_steps=cfg.checkpoint.every_n_train_steps,
            )
        )
    return callbacks + (extra_callbacks or [])


#: the loggers whose records go to the run folder's fit.log
_LOGGED = ("lightning.pytorch", "lightning.fabric", "talking_faces")


def _log_to_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in _LOGGED:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    return handler


# ---------------------------------------------------------------------------------------- fit
def fit(cfg: DictConfig) -> Path:
    """Train the run ``cfg`` describes; return its run folder.

    Raises:
        UserError: an incomplete config, an existing run folder without ``ckpt_path``, a dataset
            that does not match the model config, a trainer setting Lightning refuses.
    """
    require_complete(cfg)
    check_loggers(cfg)
    allocator = tune_allocator()
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, True)
    rank = global_rank_from_env()
    asked = str(cfg.trainer.precision)
    cfg.trainer.precision = resolve_precision(asked, str(cfg.trainer.accelerator))
    run_dir = run_dir_of(cfg)
    ckpt = resolve_ckpt(cfg, run_dir)
    resume_step = _checkpoint_step(ckpt)
    if cfg.ckpt_path == "last" and ckpt is None and rank == 0:
        log.info("no checkpoint in %s; starting from step 0", run_dir / CHECKPOINTS_DIR)

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    fill_model_shapes(cfg, data_shapes(cfg, datamodule))
    model = build_model(cfg)
    landmark_expert = attach_landmark_expert(model, cfg)

    # a folder this call creates is removed again if the run fails before its first checkpoint
    # (a trainer setting Lightning refuses, data that gives no window), so the same command can
    # simply be run again once fixed
    created_here = rank == 0 and not run_dir.exists()
    handler = _open_run_dir(cfg, run_dir, rank, ckpt is not None, landmark_expert)
    if asked != cfg.trainer.precision and rank == 0:
        # auto: bf16 where the device computes it natively (saved resolved in config.yaml)
        log.info("trainer.precision %s -> %s (CPU: %s)", asked, cfg.trainer.precision, cpu_name())
    if rank == 0:
        log.info("C allocator: %s", allocator)
    loggers: list[Logger] = []
    finished = False
    try:
        loggers = build_loggers(cfg, run_dir, resume_step)
        finished = _train(cfg, run_dir, model, datamodule, loggers, ckpt)
    except UserError:
        if created_here and not any((run_dir / CHECKPOINTS_DIR).glob("*.ckpt")):
            _remove_run_dir(run_dir, handler)
            handler = None
        raise
    finally:
        # end the W&B run: its summary and config are written, no handle is left open
        finish_loggers(loggers, success=finished)
        if handler is not None:
            _close_log_file(handler)
    if not finished:
        # stopped by a signal (Ctrl-C, SIGTERM): not a finished run, whatever Lightning returned
        raise KeyboardInterrupt
    return run_dir


def build_model(cfg: DictConfig) -> L.LightningModule:
    """The method (or expert) ``cfg.model`` names, its run config checked, in channels-last
    memory format when ``trainer.channels_last``."""
    from talking_faces.registry import model_class

    model = model_class(cfg.model.name)(cfg.model)
    if hasattr(model, "check_optim_groups"):
        model.check_optim_groups()
        model.check_run_config(cfg)
    if cfg.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _open_run_dir(
    cfg: DictConfig, run_dir: Path, rank: int, resuming: bool, landmark_expert: str | None
) -> logging.Handler | None:
    """Rank 0 creates (or reopens) the run folder and logs to its ``fit.log``, whose handler it
    returns; the other ranks wait for rank 0's folder and return None."""
    if rank != 0:
        _wait_for(run_dir / RUN_CONFIG_FILE)
        return None
    prepare_run_dir(cfg, run_dir, resuming=resuming)
    handler = _log_to_file(run_dir / "fit.log")
    if landmark_expert:
        log.info("val/lmd scored with the landmark expert %s", landmark_expert)
    return handler


def _train(
    cfg: DictConfig,
    run_dir: Path,
    model: L.LightningModule,
    datamodule: TalkingFaceDataModule,
    loggers: list[Logger],
    ckpt: str | None,
) -> bool:
    """Build the trainer, train (from ``ckpt`` when given) and save ``last.ckpt``; return
    whether the run finished (False: stopped by a signal)."""
    samples = SampleVideos(
        run_dir / "samples", cfg.logger.sample_every_n_val, cfg.logger.sample_videos
    )
    trainer = build_trainer(
        cfg,
        run_dir,
        loggers,
        [samples],
        manual_optimization=not model.automatic_optimization,
        dataset_meta=datamodule.meta,
    )
    # the seed again: building the datamodule and model drew from the global generators
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        with _without_unactionable_warnings(cfg):
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    except MisconfigurationException as exc:
        if "could not find the monitored key" not in str(exc):
            raise
        raise UserError(
            f"checkpoint.monitor={cfg.checkpoint.monitor!r} is not logged by model "
            f"'{cfg.model.name}'; use e.g. checkpoint.monitor=val/loss"
        ) from None
    if trainer.global_step == 0 and cfg.trainer.max_steps != 0:
        raise UserError(
            f"no training batches: the {cfg.data.train_split!r} split of {cfg.data.root} "
            f"gives less than data.batch_size={cfg.data.batch_size} windows per process; "
            "lower data.batch_size or data.num_frames"
        )
    if not trainer.interrupted:
        trainer.save_checkpoint(run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT, weights_only=False)
    return not trainer.interrupted


def _close_log_file(handler: logging.Handler) -> None:
    for name in _LOGGED:
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def _remove_run_dir(run_dir: Path, handler: logging.Handler | None) -> None:
    import shutil

    if handler is not None:
        _close_log_file(handler)
    shutil.rmtree(run_dir, ignore_errors=True)


def _wait_for(path: Path, timeout_s: float = 600.0) -> None:
    """Ranks other than 0 wait for rank 0's run folder (on a file system all nodes share)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise UserError(
                f"rank 0 did not create {path} within {timeout_s:.0f} s; with several nodes, "
                "out= must be a folder every node shares (docs/scale-out.md)"
            )
        time.sleep(0.2)

"""ldm trained and tested as the authors' ``train.py`` does, under the paper preset: the clip's own
frame 0 is the reference in training, validation and evaluation (``data.identity: first-frame``),
the loss and the sampling cover frames 1..T-1 given it (``model.first_frame_given``), and the
preset pins the authors' 100 epochs at fp32.

The data tests read a prepared dataset written by the real writer from made-up clips whose pixels
encode frame index and clip number (``tests/test_datamodule.py``'s helpers).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from test_datamodule import build, clip_number, frame_index, make_clip

from talking_faces.cli.main import main
from talking_faces.data import TalkingFaceDataModule, collate_batch
from talking_faces.data.dataset import PreparedDataset
from talking_faces.errors import UserError
from talking_faces.evaluation.pairs import pair_dataset
from talking_faces.models.ldm import LDM
from talking_faces.training.runconfig import load_config

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
BASE = str(EXP / "base.yaml")
GRID = str(EXP / "data" / "grid.yaml")
PAPER = str(EXP / "model" / "ldm.yaml")
TINY = str(EXP / "model" / "ldm_tiny.yaml")

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ the data
@pytest.fixture(scope="module")
def prep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 speakers x 3 clips of 12 frames; test split s1 and s2 (same- and cross-clip pairs)."""
    made = [
        make_clip(f"s{s}/c{i}", f"s{s}", k=3 * (s - 1) + i) for s in (1, 2, 3) for i in range(3)
    ]
    return build(tmp_path_factory.mktemp("ldm_fidelity"), made, protocol="unseen-speakers")


def test_first_frame_identity_is_the_clips_own_frame_0_in_training_and_validation(
    prep: Path,
) -> None:
    dm = TalkingFaceDataModule(str(prep), num_frames=5, identity="first-frame", batch_size=16)
    train = dm.train_dataloader()
    # two training epochs (random windows would move between them) and the validation windows
    for b in [*train, *train, *dm.val_dataloader()]:
        assert b["start"].tolist() == [0] * len(b["clip_id"])
        for i in range(len(b["clip_id"])):
            assert frame_index(b["identity"][i]) == 0
            assert clip_number(b["identity"][i]) == clip_number(b["frames"][i, 0])
            assert [frame_index(x) for x in b["frames"][i]] == list(range(5))
            assert torch.equal(b["identity"][i], b["frames"][i, 0])
    # `first` keeps frame 0 as the identity but draws the window anywhere: the difference
    first = TalkingFaceDataModule(str(prep), num_frames=5, identity="first", batch_size=16)
    starts = {int(s) for b in first.train_dataloader() for s in b["start"]}
    assert starts - {0}


def test_evaluation_pairs_give_frame_0_so_a_same_clip_pair_is_a_training_window(
    prep: Path,
) -> None:
    prepared = PreparedDataset.load(prep)
    whole = TalkingFaceDataModule(str(prep), num_frames=12, identity="first-frame", batch_size=1)
    windows = {b["clip_id"][0]: b for b in whole.test_dataloader()}
    pairs = pair_dataset(prepared, "test", whole.window)
    kinds = set()
    for i in range(len(pairs)):
        item = collate_batch([pairs[i]])
        kinds.add(item["kind"][0])
        assert frame_index(item["identity"][0]) == 0
        if item["kind"] == ["same-clip"]:
            window = windows[item["clip_id"][0]]
            for key in ("identity", "frames", "audio", "waveform"):
                assert torch.equal(item[key], window[key]), key
        else:
            assert item["identity_clip_id"] != item["clip_id"]
    assert kinds == {"same-clip", "cross-clip"}
    # evaluating another split pairs every clip with itself: frame 0 again
    val = pair_dataset(prepared, "val", whole.window)
    for i in range(len(val)):
        item = val[i]
        assert torch.equal(item["identity"], item["frames"][0])


# ------------------------------------------------------------------------------ the model
def tiny_ldm(first_frame_given: bool) -> LDM:
    cfg = load_config([TINY]).model
    cfg.image_size, cfg.audio_window, cfg.audio_features = 64, 28, 12
    cfg.first_frame_given = first_frame_given
    torch.manual_seed(0)
    model = LDM(cfg)
    # the authors' N(0, 0.02) initialisation leaves the audio's effect on the frames below float32
    # resolution before training; PyTorch's default makes it visible (see test_models.py)
    for net in (model.audio_encoder, model.prior):
        for m in net.modules():
            if m is not net and hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return model


def window_batch(b: int = 2, t: int = 5, seed: int = 0) -> dict:
    """A window whose frame 0 is its identity, as data.identity first-frame gives it."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(b, t, 3, 64, 64, generator=g)
    return {
        "frames": frames,
        "identity": frames[:, 0].clone(),
        "audio": torch.randn(b, t, 28, 12, generator=g),
    }


def test_first_frame_given_trains_on_frames_after_the_reference() -> None:
    """The loss of a T-frame window is the all-frames loss of frames 1..T-1 after frame 0."""
    given, every = tiny_ldm(True).train(), tiny_ldm(False).train()
    every.load_state_dict(given.state_dict())
    batch = window_batch()
    rest = {
        "frames": batch["frames"][:, 1:],
        "identity": batch["frames"][:, 0],
        "audio": batch["audio"][:, 1:],
    }
    a = given.loss(batch, generator=torch.Generator().manual_seed(3))
    b = every.loss(rest, generator=torch.Generator().manual_seed(3))
    for key in ("loss", "mse", "kl"):
        torch.testing.assert_close(a[key], b[key])
    torch.testing.assert_close(a["loss"].detach(), 4 * a["mse"] + given.config.beta * 4 * a["kl"])
    # and it is not the all-frames loss of the whole window
    c = every.loss(batch, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(a["loss"], c["loss"])


def test_first_frame_given_generates_the_reference_then_frames_1_on() -> None:
    given, every = tiny_ldm(True).eval(), tiny_ldm(False).eval()
    every.load_state_dict(given.state_dict())
    batch = window_batch()
    identity, audio = batch["identity"], batch["audio"]
    with torch.no_grad():
        out = given.generate(identity, audio, 2, torch.Generator().manual_seed(1))
        rest = every.generate(identity, audio[:, 1:], 2, torch.Generator().manual_seed(1))
        all_frames = every.generate(identity, audio, 2, torch.Generator().manual_seed(1))
    assert out.shape == all_frames.shape == (2, 2, 5, 3, 64, 64)
    assert torch.equal(out[:, :, 0], identity[:, None].expand(2, 2, 3, 64, 64))
    torch.testing.assert_close(out[:, :, 1:], rest)
    assert not torch.equal(all_frames[:, :, 0], out[:, :, 0])  # the switch: frame 0 predicted
    # audio window 0 belongs to the given frame: not read; window 1 drives frame 1
    moved = audio.clone()
    moved[:, 0] += 1.0
    later = audio.clone()
    later[:, 1] += 1.0
    with torch.no_grad():
        same = given.generate(identity, moved, 2, torch.Generator().manual_seed(1))
        other = given.generate(identity, later, 2, torch.Generator().manual_seed(1))
    assert torch.equal(same, out)
    assert not torch.equal(other[:, :, 1], out[:, :, 1])
    with torch.no_grad():  # a one-frame clip is the reference alone
        one = given.generate(identity, audio[:, :1], 1, torch.Generator().manual_seed(1))
    assert torch.equal(one[:, 0, 0], identity)


# ------------------------------------------------------------------------------ the presets
def test_paper_preset_pins_the_authors_training() -> None:
    cfg = load_config([BASE, GRID, PAPER], ["data.root=x"])
    assert cfg.trainer.max_epochs == 100 and cfg.trainer.max_steps == -1
    assert cfg.trainer.precision == "32-true"
    assert cfg.data.identity == "first-frame" and cfg.data.num_frames == 75
    assert cfg.data.audio_pad == "zero_waveform"  # their 1,965 zero samples each side
    assert cfg.model.first_frame_given is True
    assert cfg.model.lr_schedule == "constant"
    tiny = load_config([BASE, GRID, TINY], ["data.root=x"])
    assert tiny.model.first_frame_given is False and tiny.data.identity == "random"
    assert tiny.trainer.max_epochs is None and tiny.trainer.max_steps == 1000


def test_first_frame_given_refuses_another_identity(
    prep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_ldm(True)
    ok = load_config([BASE, TINY], ["data.identity=first-frame", "data.root=x"])
    model.check_run_config(ok)
    # the data file after the model file would put back the data file's `identity: random`
    flipped = load_config([BASE, PAPER, GRID], ["data.root=x"])
    with pytest.raises(UserError, match="data.identity=first-frame"):
        model.check_run_config(flipped)
    short = OmegaConf.merge(ok, {"data": {"num_frames": 1}})
    with pytest.raises(UserError, match="num_frames"):
        model.check_run_config(short)
    args = ["fit", BASE, str(EXP / "data" / "synthetic.yaml"), TINY, f"data.root={prep}"]
    args += [f"out={tmp_path}", "name=r", "model.image_size=32", "model.first_frame_given=true"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.identity=first-frame" in err[0]
    assert not (tmp_path / "r").exists()

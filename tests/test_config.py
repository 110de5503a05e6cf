"""Run configs: every experiment YAML validates; unknown keys and bad values are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from talking_faces.cli.main import main
from talking_faces.config.schema import require_complete
from talking_faces.errors import UserError
from talking_faces.models import MODELS
from talking_faces.models.ldm import LDMConfig
from talking_faces.training.runconfig import load_config

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
BASE = str(EXPERIMENTS / "base.yaml")
# run configs: base.yaml and one folder per axis; other folders (protocols/, sweeps/) hold other
# formats, validated by the commands that read them
RUN_AXES = ("data", "model", "trainer", "experts")
RUN_CONFIGS = [EXPERIMENTS / "base.yaml"] + sorted(
    p for axis in RUN_AXES for p in (EXPERIMENTS / axis).rglob("*.yaml")
)


def test_there_are_experiment_configs() -> None:
    names = {p.relative_to(EXPERIMENTS).as_posix() for p in RUN_CONFIGS}
    assert {"base.yaml", "model/ldm.yaml", "model/ldm_tiny.yaml", "trainer/cpu.yaml"} <= names


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.relative_to(EXPERIMENTS).as_posix())
def test_every_experiment_yaml_validates(path: Path) -> None:
    cfg = load_config([BASE, str(path)], ["data.root=/prepared"])
    assert cfg.data.root == "/prepared"
    if "name" in cfg.model and cfg.model.name in MODELS:
        # the model section became the method's own schema, with its defaults filled in
        schema = MODELS[cfg.model.name].Config
        assert set(cfg.model.keys()) == set(schema.__dataclass_fields__)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_has_a_tiny_preset(name: str) -> None:
    cfg = load_config([BASE, str(EXPERIMENTS / "model" / f"{name}_tiny.yaml")])
    assert cfg.model.name == name
    assert cfg.model.image_size == 64


def test_paper_settings_of_ldm() -> None:
    cfg = load_config(
        [BASE, str(EXPERIMENTS / "data" / "grid.yaml"), str(EXPERIMENTS / "model" / "ldm.yaml")]
    )
    m = cfg.model
    assert (m.image_size, m.z_dim, m.beta, m.optimizer, m.lr) == (128, 24, 1e-6, "rmsprop", 2e-4)
    assert (cfg.data.batch_size, cfg.data.num_frames, cfg.data.audio_window) == (5, 75, 28)
    assert list(m.channels) == [64, 128, 256, 512, 512]


def test_overrides_apply_with_types() -> None:
    cfg = load_config(
        [BASE, str(EXPERIMENTS / "model" / "ldm_tiny.yaml")],
        [
            "trainer.max_steps=7",
            "model.beta=0.5",
            "model.channels=[8,8,8,8]",
            "trainer.devices=auto",
            "ckpt_path=last",
            "data.root=/x",
        ],
    )
    assert cfg.trainer.max_steps == 7 and isinstance(cfg.trainer.max_steps, int)
    assert cfg.model.beta == 0.5
    assert list(cfg.model.channels) == [8, 8, 8, 8]
    assert cfg.trainer.devices == "auto"
    assert cfg.ckpt_path == "last"
    # later sources win over earlier ones
    cfg2 = load_config([BASE], ["trainer.max_steps=7", "trainer.max_steps=9"])
    assert cfg2.trainer.max_steps == 9


def test_defaults_come_from_schemas() -> None:
    cfg = load_config([], ["model.name=ldm"])
    assert cfg.model.z_dim == LDMConfig().z_dim
    assert cfg.trainer.precision == "32-true"
    assert cfg.logger.wandb is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "trainer.max_step=5",
            "unknown config key 'trainer.max_step' (did you mean 'trainer.max_steps'?)",
        ),
        ("model.z_dimm=3", "unknown config key 'model.z_dimm' (did you mean 'model.z_dim'?)"),
        ("max_steps=5", "unknown config key 'max_steps' (did you mean 'trainer.max_steps'?)"),
        ("logger.wandbb=true", "unknown config key 'logger.wandbb' (did you mean 'logger.wandb'?)"),
    ],
)
def test_unknown_override_names_closest_key(override: str, message: str) -> None:
    with pytest.raises(UserError) as exc:
        load_config([BASE, str(EXPERIMENTS / "model" / "ldm_tiny.yaml")], [override])
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_key_in_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: ldm\n  betaa: 0.1\n")
    with pytest.raises(UserError) as exc:
        load_config([BASE, str(bad)])
    msg = str(exc.value)
    assert "unknown config key 'model.betaa' (did you mean 'model.beta'?)" in msg
    assert str(bad) in msg


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(UserError) as exc:
        load_config([BASE], ["trainer.max_steps=lots"])
    assert "trainer.max_steps" in str(exc.value)


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("checkpoint.mode=mean", "[min, max]"),
        ("data.audio_feature=mel", "[mfcc, logmel, mfcc_davs]"),
        ("data.audio_pad=mirror", "[edge, zero, zero_waveform]"),
        ("model.optimizer=adm", "[adam, adamw, rmsprop, sgd]"),
        ("model.lr_schedule=step", "[constant, linear, cosine]"),
    ],
)
def test_a_choice_outside_its_enum_names_key_and_choices(override: str, allowed: str) -> None:
    """Closed string choices are Enums in the schemas: OmegaConf refuses any other value."""
    with pytest.raises(UserError) as exc:
        load_config([BASE, str(EXPERIMENTS / "model" / "ldm_tiny.yaml")], [override])
    message = str(exc.value)
    assert override.split("=")[0] in message and allowed in message
    assert "\n" not in message


def test_choices_leave_plain_strings_in_configs_and_checkpoints() -> None:
    """An Enum choice compares as its string and is stored as one (weights_only checkpoints)."""
    from talking_faces.config.choices import OptimizerName, plain
    from talking_faces.config.schema import to_dict

    cfg = load_config([BASE, str(EXPERIMENTS / "model" / "ldm.yaml")], ["data.root=x"])
    assert cfg.model.optimizer == "rmsprop" and f"{cfg.model.optimizer}" == "rmsprop"
    plain_cfg = to_dict(cfg)
    assert type(plain_cfg["model"]["optimizer"]) is str
    assert type(plain_cfg["checkpoint"]["mode"]) is str
    assert plain({"a": [OptimizerName.sgd]}) == {"a": ["sgd"]}
    assert type(plain({"a": [OptimizerName.sgd]})["a"][0]) is str


def test_unknown_model_name_suggests() -> None:
    with pytest.raises(UserError) as exc:
        load_config([BASE], ["model.name=lmd"])
    assert "did you mean 'ldm'" in str(exc.value)


def test_model_keys_need_a_model_name(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model.name"):
        load_config([BASE], ["model.z_dim=3"])


def test_missing_required_value_is_reported() -> None:
    cfg = load_config([BASE, str(EXPERIMENTS / "model" / "ldm_tiny.yaml")])
    with pytest.raises(UserError, match="data.root"):
        require_complete(cfg)


def test_bad_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_config([str(tmp_path / "nope.yaml")])
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config([str(broken)])
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        load_config([str(listy)])
    with pytest.raises(UserError, match="key=value"):
        load_config([], ["=3"])


def test_fit_cli_unknown_key_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fit", BASE, str(EXPERIMENTS / "model" / "ldm_tiny.yaml"), "trainer.max_step=3"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown config key 'trainer.max_step'")
    assert len(err.splitlines()) == 1


def test_fit_cli_prints_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "fit",
            BASE,
            str(EXPERIMENTS / "model" / "ldm_tiny.yaml"),
            "data.root=/p",
            "--print-config",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "root: /p" in out and "z_dim: 8" in out


def test_fit_cli_without_data_root_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", BASE, str(EXPERIMENTS / "model" / "ldm_tiny.yaml")]) == 2
    assert "data.root" in capsys.readouterr().err

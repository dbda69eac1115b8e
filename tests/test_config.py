"""Config loading, overrides and validation: every bad input names its key."""

import ml_collections
import pytest

from jaxdl.config import (
    ConfigError,
    apply_overrides,
    base_config,
    load_config_file,
    parse_override_args,
)
from jaxdl.train.experiment import REGISTRIES, validate_config
from tests.helpers import tiny_config


def test_overrides_parse_by_field_type():
    config = base_config()
    apply_overrides(config, {"optimizer.learning_rate": "3e-4", "batch_size": "32",
                             "progress_bar": "false", "model.features": "(8, 16, 32)",
                             "data.name": "digits"})
    assert config.optimizer.learning_rate == pytest.approx(3e-4)
    assert config.batch_size == 32 and isinstance(config.batch_size, int)
    assert config.progress_bar is False
    assert tuple(config.model.features) == (8, 16, 32)


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("optimizer.learnin_rate", "1e-3", "Did you mean 'learning_rate'"),
        ("optimzer.learning_rate", "1e-3", "config.optimzer"),
        ("batch_size", "lots", "config.batch_size='lots': expected a value of type int"),
        ("progress_bar", "maybe", "config.progress_bar='maybe': expected a boolean"),
        ("model", "cnn", "is a section"),
        ("model.features", "{1: 2}", "config.model.features"),
    ],
)
def test_bad_overrides_name_the_key(key, value, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        apply_overrides(base_config(), {key: value}, registries=REGISTRIES)
    assert fragment in str(info.value)


def test_new_key_allowed_only_if_factory_takes_it():
    config = base_config()
    apply_overrides(config, {"optimizer.b1": "0.8", "model.activation": "gelu"},
                    registries=REGISTRIES)
    assert config.optimizer.b1 == pytest.approx(0.8)
    assert config.model.activation == "gelu"
    with pytest.raises(ConfigError, match=r"model\.dropout is not an option of model 'cnn'"):
        apply_overrides(base_config(), {"model.dropout": "0.1"}, registries=REGISTRIES)


def test_parse_override_args_both_forms():
    overrides, rest = parse_override_args(
        ["--config", "x.py", "--config.seed=3", "--config.batch_size", "16", "--workdir", "w"]
    )
    assert overrides == {"seed": "3", "batch_size": "16"}
    assert rest == ["--config", "x.py", "--workdir", "w"]
    with pytest.raises(ConfigError, match="needs a value"):
        parse_override_args(["--config.seed"])


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"batch_size": 0}, "config.batch_size=0: expected an integer > 0"),
        ({"num_steps": -5}, "config.num_steps=-5"),
        ({"seed": -1}, "config.seed=-1: expected an integer >= 0"),
        ({"model.name": "transformer9"}, "unknown model config.model.name='transformer9'"),
        ({"data.name": "imagenet"}, "unknown dataset config.data.name='imagenet'"),
        ({"optimizer.name": "adamm"}, "Did you mean 'adam'"),
        ({"loss.name": "hinge"}, "unknown loss"),
        ({"mesh.data": 99}, "mesh.data=99"),
        ({"mesh.data": 8, "batch_size": 12}, "config.batch_size=12 must be divisible by the 8"),
    ],
)
def test_validate_config_rejects(changes, fragment):
    config = tiny_config()
    for key, value in changes.items():
        section, _, leaf = key.rpartition(".")
        node = config[section] if section else config
        node[leaf] = value
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    assert fragment in str(info.value)


def test_model_option_from_config_file_checked():
    config = tiny_config()
    with config.model.unlocked():
        config.model.widht = 3
    with pytest.raises(ConfigError, match=r"model\.widht is not an option of model 'cnn'"):
        validate_config(config)


def test_misspelt_key_in_a_config_file_is_refused():
    config = tiny_config()
    with config.unlocked():
        config.num_step = 100
    with pytest.raises(ConfigError, match=r"config\.num_step.*Did you mean 'num_steps'"):
        validate_config(config)
    config = tiny_config()
    with config.monitor.unlocked():
        config.monitor.grad_nrom = True
    with pytest.raises(ConfigError, match=r"config\.monitor\.grad_nrom"):
        validate_config(config)


def test_every_shipped_config_is_valid():
    for name in ("quickstart", "mnist_mlp", "mnist_cnn"):
        config = load_config_file(f"experiments/configs/{name}.py")
        assert isinstance(config, ml_collections.ConfigDict)
        config.mesh.data = 1
        validate_config(config)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no config file"):
        load_config_file(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no get_config"):
        load_config_file(bad)

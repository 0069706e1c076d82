import pytest

from core import ConfigError
from core.config import apply_override, component, load_config, parse_config, read_yaml
from core.registry import Registry
from core.resolve import check_section_names

MINIMAL = {"name": "r", "data": {"format": "digits"}, "model": "simple_cnn"}


def test_defaults_and_name_from_file(write_config):
    path = write_config("data: {format: digits}\nmodel: simple_cnn\n", name="myrun.yaml")
    config = load_config(path)
    assert config.name == "myrun"
    assert config.data.storage == "uint8" and config.data.sampler == "random" and config.data.batch_size == 64
    assert config.optim.optimizer == "adamw"


def test_missing_file():
    with pytest.raises(ConfigError, match="config file 'nope.yaml' does not exist"):
        read_yaml("nope.yaml")


def test_yaml_syntax_error_names_the_line(write_config):
    path = write_config("name: r\ndata:\n  format: digits\n  transforms: [pixelnorm\nmodel: simple_cnn\n")
    with pytest.raises(ConfigError, match=r"run.yaml line 5, column \d+: YAML syntax error"):
        read_yaml(path)


def test_top_level_must_be_a_mapping(write_config):
    with pytest.raises(ConfigError, match="must hold a mapping"):
        read_yaml(write_config("- a\n- b\n"))


def test_unknown_keys_suggest_the_closest():
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "data": {"format": "digits", "batch_sise": 3}})
    assert "config error at data.batch_sise: unknown key 'batch_sise' (did you mean 'batch_size'?)" in str(err.value)
    with pytest.raises(ConfigError, match="config error at modle: unknown key 'modle' \\(did you mean 'model'"):
        parse_config({key: value for key, value in MINIMAL.items() if key != "model"} | {"modle": "x"})
    # beside a complete config, a top-level key may be a plugin's section: checked once the plugins are loaded
    with pytest.raises(ConfigError, match="config error at experimnet: unknown key 'experimnet' \\(did you mean 'experiment'"):
        check_section_names(parse_config({**MINIMAL, "experimnet": {}}), Registry.load())


def test_wrong_types_and_missing_keys_name_the_path():
    with pytest.raises(ConfigError, match="config error at data.batch_size: 0 is not valid"):
        parse_config({**MINIMAL, "data": {"format": "digits", "batch_size": 0}})
    with pytest.raises(ConfigError, match="config error at optim.optimizer: 'adma' is not valid"):
        parse_config({**MINIMAL, "optim": {"optimizer": "adma"}})
    with pytest.raises(ConfigError, match="config error at model: is required"):
        parse_config({"name": "r", "data": {"format": "digits"}})


def test_overrides_parse_yaml_values_and_descend_into_bare_components():
    raw = {"data": {"format": "digits", "batch_size": 64}, "model": "simple_cnn"}
    apply_override(raw, "data.batch_size=32")
    apply_override(raw, "model.simple_cnn.conv1=8")
    apply_override(raw, "data.transforms=[pixelnorm]")
    apply_override(raw, "trainer.max_epochs=1")
    assert raw["data"]["batch_size"] == 32
    assert raw["model"] == {"simple_cnn": {"conv1": 8}}
    assert raw["data"]["transforms"] == ["pixelnorm"]
    assert raw["trainer"] == {"max_epochs": 1}
    with pytest.raises(ConfigError, match="not of the form key.path=value"):
        apply_override(raw, "data.batch_size")
    with pytest.raises(ConfigError, match="config error at data.batch_size: is 32, not a mapping"):
        apply_override(raw, "data.batch_size.x=1")


def test_component_forms():
    assert component("pixelnorm", "p") == ("pixelnorm", {})
    assert component({"pixelnorm": None}, "p") == ("pixelnorm", {})
    assert component({"pixelnorm": {"mean": 1}}, "p") == ("pixelnorm", {"mean": 1})
    with pytest.raises(ConfigError, match="config error at data.transforms.0: .* is not a component"):
        component({"a": {}, "b": {}}, "data.transforms.0")

from typing import Literal

import pytest

from core import ConfigError
from core.options import validate_options


class Factory:
    def __init__(self, size: int = 8, gain: float = 1.0, mode: Literal["a", "b"] = "a", names: list[str] = ()) -> None:
        pass


def test_valid_options_are_converted():
    assert validate_options(Factory, {"gain": 2, "size": 4}, "data.format.f", "format 'f'") == {"gain": 2.0, "size": 4}


def test_unknown_option_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        validate_options(Factory, {"sise": 4}, "data.format.f", "format 'f'")
    assert str(err.value).startswith("config error at data.format.f.sise: format 'f' has no option 'sise' (did you mean 'size'?)")
    assert "its options are: gain, mode, names, size" in str(err.value)


def test_wrong_type_names_path_value_and_expected_type():
    with pytest.raises(ConfigError) as err:
        validate_options(Factory, {"size": "big"}, "model.m", "model 'm'")
    assert "config error at model.m.size: 'big' is not valid for option 'size' of model 'm': expected int" in str(err.value)
    with pytest.raises(ConfigError, match="expected one of 'a', 'b'"):
        validate_options(Factory, {"mode": "c"}, "model.m", "model 'm'")
    with pytest.raises(ConfigError, match="model.m.names.1: 3 is not valid"):
        validate_options(Factory, {"names": ["x", 3]}, "model.m", "model 'm'")


def test_missing_required_option_and_context_args_are_skipped():
    def needs(meta, depth: int) -> None: ...

    with pytest.raises(ConfigError, match="model 'n' needs option 'depth'"):
        validate_options(needs, {}, "model.n", "model 'n'", skip=("meta",))
    with pytest.raises(ConfigError, match="has no option 'meta'"):
        validate_options(needs, {"meta": 1, "depth": 2}, "model.n", "model 'n'", skip=("meta",))


def test_var_keyword_factories_accept_any_key():
    def loose(**kwargs) -> None: ...

    assert validate_options(loose, {"anything": 1}, "p", "x") == {"anything": 1}

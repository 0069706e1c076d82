from typing import Annotated, Any, Literal

import annotated_types
import pydantic
import pytest

from core import ConfigError
from core.config import ComponentSpec
from core.options import describe_type, option_docs, validate_options, yaml_value


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
    with pytest.raises(ConfigError, match="expected one of a, b "):
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


@pytest.mark.parametrize(("hint", "text"), [
    (int, "int"), (Any, "any"), (type(None), "null"), (str | None, "str or null"),
    (list[str], "list of str"), (tuple[int, ...], "list of int"), (list[Any], "list"),
    (dict[str, float], "mapping of str to float"), (dict[str, Any] | None, "mapping or null"),
    (Literal["a", "b"], "one of a, b"), (Literal[1, 3], "one of 1, 3"), (Literal["a", "b"] | None, "one of a, b, null"),
    (Literal["yes", "1"], "one of 'yes', '1'"), (list[Literal["digit", "parity"]], "list, each one of digit, parity"),
    (list[float] | Literal["auto"], "list of float or auto"), (Literal["auto"] | bool, "auto or bool"),
    (str | list[str] | None, "str or list of str or null"), (Annotated[int, annotated_types.Gt(0)] | None, "int > 0 or null"),
    (list[int | str] | None, "list of (int or str) or null"), (ComponentSpec, "component"), (list[ComponentSpec], "list of components"), (pydantic.ByteSize | None, "bytes or null"),
])
def test_types_read_as_yaml(hint, text):
    assert describe_type(hint) == text


def test_field_constraints_and_yaml_values():
    assert describe_type(int, metadata=[annotated_types.Ge(0), annotated_types.Le(9)]) == "int, 0 to 9"
    assert describe_type(str, metadata=[annotated_types.MinLen(1)]) == "str, not empty"
    assert [yaml_value(v) for v in (None, True, "epoch", "", "null", [1, "a"], {"k": None})] == \
        ["null", "true", "epoch", "''", "'null'", "[1, a]", "{k: null}"]


def test_option_docs_give_types_defaults_and_doc_lines():
    class Documented:
        """Summary.

        ``size``: the side in pixels (>= 1). Not shown.
        ``mode``: how."""

        def __init__(self, size: Annotated[int, annotated_types.Ge(1)] = 8, mode: Literal["a", "b"] | None = None) -> None:
            pass

    assert option_docs(Documented) == [
        {"name": "size", "type": "int >= 1", "required": False, "default": 8, "doc": "the side in pixels (>= 1)."},
        {"name": "mode", "type": "one of a, b, null", "required": False, "default": None, "doc": "how."},
    ]

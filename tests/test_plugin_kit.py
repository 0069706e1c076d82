"""The plugin author's kit: core.testing, its pytest fixtures, ``core-plugins show``/``--json``,
``core-data info`` fields, and the YAML path of an error a component's ``__init__`` raises."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from dataclasses import replace

import numpy as np
import pytest

import plugins.digits
from core import ConfigError, DataFormat, FormatWrapper, Split, Transform, hookimpl
from core.cli.data import main as data_main
from core.cli.plugins import main as plugins_main
from core.config import parse_config
from core.resolve import resolve
from core.run import write_wrapper_files
from core.testing import TinyDataset, build, check_component, registry

pytest_plugins = ("pytester",)

DOCUMENTED = '''
from core import DEVICE, Transform, hookimpl


class Scale(Transform):
    """Multiplies the stimulus. More text.

    ``factor``: what the stimulus is multiplied by. Not part of the option's text.
    offset: added after scaling."""

    stages = frozenset({DEVICE})

    def __init__(self, level: int, factor: float = 2.0, offset: float | None = None) -> None:
        self.factor = factor


@hookimpl
def core_transforms():
    return {"scale": Scale, "lazy_gone": "nowhere_at_all.mod:Gone"}
'''


def plugin_module(name: str, kind_hook: str, components: dict) -> types.ModuleType:
    """A plugin module made in the test: ``kind_hook`` returns ``components``."""
    module = types.ModuleType(name)

    @hookimpl
    def hook() -> dict:
        return components

    hook.__name__ = kind_hook
    setattr(module, kind_hook, hook)
    return module


class Refusing(DataFormat):
    def __init__(self, root: str = "", absolute: bool = False, broken: bool = False) -> None:
        if broken:
            raise TypeError("root must name a folder")
        raise ConfigError("data.format.refusing.root" if absolute else "root", f"no folder {root!r}", fix="give one")

    def meta(self): ...

    def open(self, split): ...


class First(FormatWrapper):
    """Keeps the first ``first`` samples of each split (a third party's format wrapper)."""

    def __init__(self, fmt: DataFormat, path: str, first: int = 1) -> None:
        super().__init__(fmt, path)
        self.first = first

    def meta(self):
        inner = self.fmt.meta()
        return replace(inner, split_sizes={split: min(n, self.first) for split, n in inner.split_sizes.items()})

    def open(self, split):
        return Split({key: value[:self.first] for key, value in self.fmt.open(split).fields.items()})

    @classmethod
    def write_run_files(cls, run_dir, wrapped):
        (run_dir / "first.json").write_text(json.dumps({name: w.first for name, w in wrapped.items()}))


def test_a_format_wrapper_takes_its_options_off_any_format_wraps_it_and_writes_its_run_files(tmp_path):
    found = registry(plugin_module("first_plugin", "core_format_wrappers", {"first": First}))
    run = {"name": "w", "data": {"format": {"tiny": {"n": 10, "first": 4}}}, "model": "simple_cnn",
           "trainer": {"accelerator": "cpu"}}
    resolved = resolve(parse_config(run), found)
    assert resolved.meta.split_sizes == {"train": 4, "val": 4, "test": 4} and len(resolved.first.fmt.open("val")) == 4
    assert [(u.kind, u.name, u.path) for u in resolved.used[:2]] == [("format", "tiny", "data.format"),
                                                                     ("format_wrapper", "first", "data.format")]
    write_wrapper_files(tmp_path, resolved)
    assert json.loads((tmp_path / "first.json").read_text()) == {"tiny": 4}
    run["data"]["format"]["tiny"]["first"] = "many"
    with pytest.raises(ConfigError, match="option 'first' of format_wrapper 'first'") as error:
        resolve(parse_config(run), found)
    assert error.value.path == "data.format.tiny.first"


def test_importing_the_kit_and_its_pytest_plugin_imports_no_torch():
    code = "import sys, core.testing, core.pytest_plugin; print('torch' in sys.modules, 'lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == ["False", "False"]


def test_registry_holds_the_installed_plugins_tiny_and_the_plugins_under_test_once():
    twice = plugin_module("twice_plugin", "core_transforms", {"twice": Transform})
    found = registry(twice, plugins.digits, "plugins.digits")  # digits is installed: not added again
    assert {"twice", "pixelnorm"} <= set(found.components["transform"])
    assert {"tiny", "digits"} <= set(found.components["format"])
    assert found.components["format"]["digits"].plugin.name == "digits"


def test_check_component_validates_as_a_run_does_and_build_builds():
    checked = check_component("format", "tiny", {"n": "4"})
    assert checked.options == {"n": 4} and checked.options_path == "data.format.tiny"
    with pytest.raises(ConfigError, match=r"at data.transforms.0.pixelnorm.meen: transform 'pixelnorm' has no option "
                                          r"'meen' \(did you mean 'mean'\?\)"):
        check_component("transform", "pixelnorm", {"meen": 1})
    with pytest.raises(ConfigError, match="at datasets.2.format: no format named 'tinyy'"):
        check_component("format", "tinyy", path="datasets.2.format")
    import torch

    meta = TinyDataset(heads={"a": 2, "b": 5}).meta()
    model = build("model", "simple_cnn", {"conv1": 4, "conv2": 4, "fc_hidden": 8}, meta)
    out = model({"stim": torch.zeros(3, 1, 8, 8)})
    assert {head: tuple(logits.shape) for head, logits in out.items()} == {"a": (3, 2), "b": (3, 5)}


def test_build_and_check_cover_format_wrappers_and_analyses():
    subset = build("format_wrapper", "class_groups", {"classes": [0, 2]}, fmt=TinyDataset(heads={"label": 3}))
    assert subset.meta().heads == {"label": 2}
    with pytest.raises(ConfigError, match="at data.format.tiny.classez: format_wrapper 'class_groups' has no option 'classez'"):
        check_component("format_wrapper", "class_groups", {"classez": [0]})
    sweep = build("analysis", "experiment", {"parameter": "stimulus_contrast.stimulus_contrast", "values": [0.5]})
    assert sweep.values == [0.5] and sweep.files == ("experiment.csv", "experiment.png")
    with pytest.raises(ConfigError, match="at experiment.values: is empty"):
        build("analysis", "experiment", {"parameter": "stimulus_contrast.stimulus_contrast", "values": []})
    with pytest.raises(ValueError, match="no component kind 'transfrom'; the kinds are: format, format_wrapper"):
        check_component("transfrom", "pixelnorm")


def test_the_tiny_dataset_makes_the_heads_shape_and_fields_it_is_given():
    tiny = build("format", "tiny", {"n": 5, "shape": [2, 4, 6], "heads": {"a": 2}, "fields": {"contrast": [[], "float32"]}})
    meta = tiny.meta()
    assert (meta.stim_shape, meta.heads, meta.fields) == ((2, 4, 6), {"a": 2}, {"contrast": ((), "float32")})
    arrays = tiny.open("val").fields
    assert {k: (v.shape, v.dtype.name) for k, v in arrays.items()} == {
        "stim": ((5, 2, 4, 6), "uint8"), "a": ((5,), "int64"), "contrast": ((5,), "float32")}
    assert np.array_equal(arrays["stim"], tiny.open("val").fields["stim"]) and arrays["a"].max() < 2
    with pytest.raises(ConfigError, match=r"at data.format.tiny: format 'tiny': layout HW does not match shape \(1, 8, 8\)"):
        build("format", "tiny", {"axes": "HW"})


def test_the_fixtures_give_a_registry_with_the_plugins_under_test_and_a_real_run(pytester):
    pytester.makeconftest('''
        import types, pytest
        from core import Transform, hookimpl

        class Twice(Transform):
            stages = frozenset({"device"})
            def __call__(self, batch):
                return {**batch, "stim": 2 * batch["stim"]}

        twice = types.ModuleType("twice")
        twice.core_transforms = hookimpl(lambda: {"twice": Twice})
        twice.core_transforms.__name__ = "core_transforms"

        @pytest.fixture
        def core_plugins():
            return [twice]
    ''')
    pytester.makepyfile('''
        def test_kit(core_registry, tiny_dataset, run_config, tmp_path):
            assert "twice" in core_registry.components["transform"]
            assert tiny_dataset.meta().heads == {"label": 3}
            metrics = run_config({"data": {"format": {"tiny": {"heads": {"a": 2, "b": 3}}}, "batch_size": 8,
                                           "transforms": ["pixelnorm", "twice"]},
                                  "model": {"simple_cnn": {"conv1": 4, "conv2": 4, "fc_hidden": 8}}})
            assert metrics["step"] == 2 and {"test/a_acc", "test/b_acc", "val/loss"} <= set(metrics)
            assert (tmp_path / "test" / "metrics.csv").is_file()
    ''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_config_error_from_init_is_put_under_the_component_s_yaml_path():
    refusing = registry(plugin_module("refusing_plugin", "core_data_formats", {"refusing": Refusing}))
    with pytest.raises(ConfigError) as relative:
        check_component("format", "refusing", {"root": "x"}, registry=refusing, path="datasets.1.format").build()
    assert str(relative.value) == "config error at datasets.1.format.refusing.root: no folder 'x'\n  fix: give one"
    with pytest.raises(ConfigError, match="^config error at data.format.refusing.root: "):  # already under it: kept
        build("format", "refusing", {"absolute": True}, registry=refusing)
    with pytest.raises(ConfigError, match="^config error at data.format.refusing: format 'refusing': root must name a"):
        build("format", "refusing", {"broken": True}, registry=refusing)


@pytest.mark.parametrize("kind, hook, path", [("model", "core_models", "model.bad"),
                                              ("callback", "core_callbacks", "callbacks.0.bad"),
                                              ("storage", "core_storage_backends", "data.storage.bad"),
                                              ("sampler", "core_samplers", "data.sampler.bad")])
def test_a_value_error_from_init_names_the_yaml_path_of_every_kind(kind, hook, path):
    def bad(*context, size: int = 1):
        raise ValueError(f"size {size} is too small")

    found = registry(plugin_module(f"bad_{kind}", hook, {"bad": bad}))
    with pytest.raises(ConfigError, match=rf"^config error at {path}: {kind} 'bad': size 1 is too small$"):
        build(kind, "bad", {}, registry=found)


def test_core_plugins_lists_one_component_per_row_and_failures_below(capsys, make_plugin_dist):
    make_plugin_dist("broken", "raise ImportError('no numba')")
    assert plugins_main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["kind", "component", "plugin", "distribution", "version", "status", "import", "ms"]
    rows = {tuple(line.split()[:3]) for line in lines[1:]}
    assert {("sampler", "random", "samplers"), ("sampler", "sequential", "samplers"), ("format", "digits", "digits"),
            ("-", "-", "broken")} <= rows
    assert "plugin 'broken' (broken 0.1) failed to import: ImportError: no numba" in lines


def test_core_plugins_json_has_a_versioned_schema(capsys):
    assert plugins_main(["--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"schema_version", "plugins"} and document["schema_version"] == 1
    digits = next(row for row in document["plugins"] if row["plugin"] == "digits")
    assert set(digits) == {"plugin", "distribution", "version", "module", "status", "error", "import_ms", "components"}
    assert digits["components"] == {"format": ["digits"]} and digits["status"] == "loaded" and digits["error"] is None
    assert plugins_main(["--json", "--disable", "digits"]) == 0
    digits = next(row for row in json.loads(capsys.readouterr().out)["plugins"] if row["plugin"] == "digits")
    assert (digits["status"], digits["error"]) == ("disabled", "disabled by plugins.disable")


def test_core_plugins_show_gives_each_option_with_type_default_and_doc(capsys, make_plugin_dist):
    make_plugin_dist("documented", DOCUMENTED)
    assert plugins_main(["show", "scale"]) == 0
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert lines[:6] == ["transform scale: plugin documented (documented 0.1), documented_plugin:Scale",
                         "Multiplies the stimulus.",
                         "option type default doc",
                         "level int (required)",
                         "factor float 2.0 what the stimulus is multiplied by.",
                         "offset float or null null added after scaling."]
    assert plugins_main(["show", "documented", "--json"]) == 0  # a plugin: all its components
    document = json.loads(capsys.readouterr().out)
    assert document["schema_version"] == 1 and [p["plugin"] for p in document["plugins"]] == ["documented"]
    scale, gone = document["components"]
    assert scale["options"][1] == {"name": "factor", "type": "float", "required": False, "default": 2.0,
                                   "doc": "what the stimulus is multiplied by."}
    assert scale["options"][0] == {"name": "level", "type": "int", "required": True, "doc": ""}
    assert gone["factory"] == "nowhere_at_all.mod:Gone" and "No module named 'nowhere_at_all'" in gone["error"]


def test_core_plugins_show_of_a_model_leaves_out_what_the_core_passes(capsys):
    assert plugins_main(["show", "simple_cnn", "--json"]) == 0
    (model,) = json.loads(capsys.readouterr().out)["components"]
    assert [o["name"] for o in model["options"]] == ["conv1", "conv2", "fc_hidden", "dropout"]


def test_core_plugins_show_of_an_unknown_name_suggests_one(capsys):
    assert plugins_main(["show", "digitz"]) == 2
    assert "error: no plugin or component is named 'digitz' (did you mean 'digits'?)" in capsys.readouterr().err


def test_core_data_info_shows_the_fields(capsys, make_plugin_dist):
    make_plugin_dist("tinyfmt", "from core.testing import core_data_formats")
    assert data_main(["info", "tiny", "--option", "fields={contrast: [[], float32], responses: [[7], float32]}"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["fields"] == {"contrast": {"shape": [], "dtype": "float32"}, "responses": {"shape": [7], "dtype": "float32"}}

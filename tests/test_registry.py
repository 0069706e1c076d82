import logging

import pytest

from core import ConfigError, PluginError, hookimpl
from core.registry import Registry

BUILTIN = {"digits", "cast", "samplers", "pixelnorm", "simple_cnn"}


def test_builtin_plugins_load_from_entry_points():
    registry = Registry.load()
    assert BUILTIN <= set(registry.plugins)
    for name in BUILTIN:
        assert registry.plugins[name].status == "loaded"
        assert registry.plugins[name].dist == "core-train"
    assert set(registry.components["sampler"]) >= {"random", "sequential"}
    assert registry.get("model", "simple_cnn", "model").plugin.name == "simple_cnn"


def test_unknown_name_lists_choices_and_suggests_closest():
    registry = Registry.load()
    with pytest.raises(ConfigError) as err:
        registry.get("transform", "pixelnrom", "data.transforms.0")
    text = str(err.value)
    assert "config error at data.transforms.0" in text
    assert "no transform named 'pixelnrom' (did you mean 'pixelnorm'?)" in text
    assert "available transforms: 'fftwhitening', 'normalize', 'pixelnorm', " in text


def test_disable_and_only():
    registry = Registry.load(disable=["pixelnorm"])
    assert registry.plugins["pixelnorm"].status == "disabled"
    with pytest.raises(ConfigError, match="plugin 'pixelnorm' \\(core-train .*\\) is disabled by plugins.disable"):
        registry.get("transform", "pixelnorm", "data.transforms.0")
    only = Registry.load(only=["digits"])
    assert only.plugins["digits"].status == "loaded"
    assert only.plugins["cast"].status == "not selected"
    assert not only.components["storage"]


def test_unknown_plugin_in_disable_is_a_config_error():
    with pytest.raises(ConfigError, match="plugins.disable: no installed plugin is named 'pixlenorm' \\(did you mean 'pixelnorm'"):
        Registry.load(disable=["pixlenorm"])


def test_autoload_env_var_loads_only_the_only_list(monkeypatch):
    monkeypatch.setenv("CORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert not any(p.status == "loaded" for p in Registry.load().plugins.values())
    registry = Registry.load(only=["samplers"])
    assert [p.name for p in registry.plugins.values() if p.status == "loaded"] == ["samplers"]


def test_plugin_that_raises_on_import_is_a_warning_and_named_in_errors(make_plugin_dist, caplog):
    make_plugin_dist("broken", "raise ImportError('numba is not installed')\n")
    with caplog.at_level(logging.WARNING, logger="core"):
        registry = Registry.load()
    assert "plugin 'broken' (broken 0.1) failed to import: ImportError: numba is not installed" in caplog.text
    assert registry.plugins["broken"].status == "failed"
    assert registry.plugins["pixelnorm"].status == "loaded"  # the others still load
    with pytest.raises(ConfigError, match="failed to import, it may provide 'warp': ImportError: numba is not installed"):
        registry.get("transform", "warp", "data.transforms.1")


def test_two_plugins_with_one_name_is_an_error_naming_both(make_plugin_dist):
    make_plugin_dist("rival", """
        from core import hookimpl

        @hookimpl
        def core_transforms():
            return {"pixelnorm": "rival_plugin:X"}
    """, version="2.0")
    with pytest.raises(PluginError) as err:
        Registry.load()
    text = str(err.value)
    assert "two plugins provide the transform 'pixelnorm'" in text
    assert "(core-train 0.1.0)" in text and "(rival 2.0)" in text
    assert "plugins: {disable: [" in text
    # the fix the message gives works
    assert Registry.load(disable=["rival"]).get("transform", "pixelnorm", "x")


def test_misspelt_hook_is_an_error_at_registration():
    class Plugin:
        @hookimpl
        def core_transfroms(self):
            return {}

    with pytest.raises(PluginError, match="implements 'core_transfroms', which is not a core hook \\(did you mean 'core_transforms'"):
        Registry().add(Plugin())


def test_hook_without_marker_is_an_error():
    import types

    module = types.ModuleType("unmarked")
    exec("def core_models():\n    return {}\n", module.__dict__)
    with pytest.raises(PluginError, match="defines core_models\\(\\) without @hookimpl"):
        Registry().add(module)


def test_bad_hook_return_and_bad_factory():
    class NotDict:
        @hookimpl
        def core_models(self):
            return ["simple_cnn"]

    with pytest.raises(PluginError, match="core_models\\(\\) must return \\{name: factory\\}"):
        Registry().add(NotDict())

    class BadFactory:
        @hookimpl
        def core_models(self):
            return {"m": 3}

    with pytest.raises(PluginError, match="model 'm' has factory 3"):
        Registry().add(BadFactory())


def test_lazy_factory_is_imported_on_first_use_and_its_failure_named():
    class Lazy:
        @hookimpl
        def core_samplers(self):
            return {"ghost": "no_such_module_xyz:Ghost"}

    registry = Registry()
    registry.add(Lazy())
    component = registry.get("sampler", "ghost", "data.sampler")
    with pytest.raises(PluginError, match="sampler 'ghost' of plugin .* failed to load from 'no_such_module_xyz:Ghost': ModuleNotFoundError"):
        component.resolve()


def test_require_checks_installed_versions():
    Registry.load(require={"core-train": ">=0.1"})
    with pytest.raises(ConfigError, match="plugins.require.core-train: 'core-train' 0.1.0 is installed, the run requires '>=9'"):
        Registry.load(require={"core-train": ">=9"})
    with pytest.raises(ConfigError, match="distribution 'nope-dist' is not installed"):
        Registry.load(require={"nope-dist": ">=1"})
    with pytest.raises(ConfigError, match="'banana' is not a version specifier"):
        Registry.load(require={"core-train": "banana"})


def test_a_registration_hook_that_raises_marks_the_plugin_failed(make_plugin_dist, caplog):
    make_plugin_dist("raiser", """
        from core import hookimpl

        @hookimpl
        def core_models():
            raise RuntimeError("boom")
    """)
    with caplog.at_level(logging.WARNING, logger="core"):
        registry = Registry.load()
    assert registry.plugins["raiser"].status == "failed"
    assert "a registration hook raised RuntimeError: boom" in registry.plugins["raiser"].error
    assert registry.plugins["pixelnorm"].status == "loaded"


def test_listing_is_not_strict_about_an_invalid_plugin(make_plugin_dist):
    make_plugin_dist("typo", """
        from core import hookimpl

        @hookimpl
        def core_transfroms():
            return {}
    """)
    with pytest.raises(PluginError, match="implements 'core_transfroms'"):
        Registry.load()
    registry = Registry.load(strict=False)
    assert registry.plugins["typo"].status == "invalid" and "core_transfroms" in registry.plugins["typo"].error
    assert registry.plugins["pixelnorm"].status == "loaded"


def test_an_empty_only_list_loads_nothing(monkeypatch):
    assert not any(p.status == "loaded" for p in Registry.load(only=[]).plugins.values())
    monkeypatch.setenv("CORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(ConfigError, match="is not loaded \\(CORE_DISABLE_PLUGIN_AUTOLOAD is set and it is not in plugins.only\\)"):
        Registry.load().get("transform", "pixelnorm", "data.transforms.0")


def test_a_plugin_whose_hook_raises_provides_nothing(make_plugin_dist):
    make_plugin_dist("half", """
        from core import hookimpl

        @hookimpl
        def core_transforms():
            return {"half_t": "half_plugin:T"}

        @hookimpl
        def core_models():
            raise RuntimeError("boom")
    """)
    registry = Registry.load()
    assert registry.plugins["half"].status == "failed"
    assert "half_t" not in registry.components["transform"]

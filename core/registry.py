"""Discovers plugins through entry points and resolves component names.

The registry loads every entry point of the group ``core.plugins`` (unless a run disables
it), registers the module with pluggy, validates it at once (a misspelt hook or a hook
without ``@hookimpl`` is an error, not silence) and asks each registration hook for its
``{name: factory}`` mapping. Factories given as ``"module:attr"`` strings are imported only
when a run uses them, so listing plugins never imports torch or a heavy optional package.
"""

from __future__ import annotations

import importlib
import os
import time
import types
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import importlib_metadata
import pluggy

from core import hookspecs
from core.errors import ConfigError, PluginError, PluginUnavailable, choices_text, did_you_mean

if TYPE_CHECKING:
    from core.config import RunConfig

GROUP = "core.plugins"
AUTOLOAD_ENV = "CORE_DISABLE_PLUGIN_AUTOLOAD"
KINDS: dict[str, str] = {
    "format": "core_data_formats",
    "format_wrapper": "core_format_wrappers",
    "storage": "core_storage_backends",
    "transform": "core_transforms",
    "sampler": "core_samplers",
    "model": "core_models",
    "tool": "core_data_tools",
    "logger": "core_loggers",
    "callback": "core_callbacks",
    "command": "core_commands",
    "analysis": "core_analyses",
}
HOOK_NAMES = tuple(KINDS.values())


log = logging.getLogger("core")


@dataclass
class PluginInfo:
    """One plugin as the registry saw it: where it comes from and what became of it."""

    name: str
    dist: str
    version: str
    module: str
    status: str = "loaded"  # loaded | failed | unavailable | disabled | not selected
    error: str | None = None
    import_seconds: float = 0.0
    components: dict[str, list[str]] = field(default_factory=dict)
    provides: tuple[str, ...] = ()  # what an unavailable plugin says it would provide (empty: unknown)

    @property
    def origin(self) -> str:
        return f"plugin '{self.name}' ({self.dist} {self.version})"


@dataclass
class Component:
    """A named factory of one kind, and the plugin that provides it."""

    kind: str
    name: str
    factory: Any
    plugin: PluginInfo

    def resolve(self) -> Any:
        """The factory itself, importing it first if the plugin gave a ``module:attr`` string.

        A module that raises :class:`PluginUnavailable` on import (an optional dependency is
        missing) makes this one component unavailable: the error passes through as is."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            self.factory = getattr(importlib.import_module(module_name), attr)
        except PluginUnavailable:  # an optional dependency of this component is missing: the caller decides
            raise
        except Exception as exc:  # a plugin's own bug: report it, naming the plugin
            raise PluginError(
                f"{self.kind} '{self.name}' of {self.plugin.origin} failed to load from "
                f"'{self.factory}': {type(exc).__name__}: {exc}"
            ) from exc
        return self.factory


class Registry:
    """The components every loaded plugin provides, by kind and name."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("core")
        self.manager.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.autoload_off = False
        self.components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}

    # ----------------------------------------------------------------- loading
    @classmethod
    def of_run(cls, config: RunConfig) -> Registry:
        """The plugins a run's ``plugins:`` section selects (:meth:`load` with its keys)."""
        plugins = config.plugins
        return cls.load(disable=plugins.disable, only=plugins.only, require=plugins.require)

    @classmethod
    def load(
        cls,
        disable: Iterable[str] = (),
        only: Iterable[str] | None = None,
        require: Mapping[str, str] | None = None,
        strict: bool = True,
    ) -> Registry:
        """Load the installed plugins, honouring a run's ``plugins`` section.

        With ``CORE_DISABLE_PLUGIN_AUTOLOAD=1`` only the plugins named in ``only`` load.
        ``strict=False`` (for listing) records an invalid plugin (a misspelt hook, a name
        another plugin already provides) as ``invalid`` instead of raising.
        """
        registry = cls()
        entry_points = {ep.name: ep for ep in importlib_metadata.entry_points(group=GROUP)}
        disable, only = set(disable), (set(only) if only is not None else None)
        registry.autoload_off = os.environ.get(AUTOLOAD_ENV, "") not in ("", "0")
        if registry.autoload_off and only is None:
            only = set()
        for key, names in (("disable", disable), ("only", only or set())):
            for name in sorted(names - entry_points.keys()):
                raise ConfigError(
                    f"plugins.{key}",
                    f"no installed plugin is named '{name}'{did_you_mean(name, entry_points)}",
                    fix=f"installed plugins: {choices_text(entry_points)} (see core-plugins)",
                )
        for name, ep in sorted(entry_points.items()):
            info = PluginInfo(name, *_dist_of(ep), module=ep.value)
            if name in disable:
                info.status, info.error = "disabled", "disabled by plugins.disable"
            elif only is not None and name not in only:
                info.status, info.error = "not selected", (f"{AUTOLOAD_ENV} is set and it is not in plugins.only"
                                                           if registry.autoload_off else "not in plugins.only")
            else:
                registry._import(ep, info, strict)
            registry.plugins[name] = info
        if require:
            registry.check_requirements(require)
        return registry

    def _import(self, ep: Any, info: PluginInfo, strict: bool = True) -> None:
        start = time.perf_counter()
        try:
            module = ep.load()
        except PluginUnavailable as exc:  # an optional dependency is not installed: say so when asked
            info.status, info.error, info.provides = "unavailable", str(exc), exc.provides
            return
        except Exception as exc:  # a broken plugin must not take the others down
            info.status = "failed"
            info.error = f"{type(exc).__name__}: {exc}"
            log.warning("%s failed to import: %s", info.origin, info.error)
            return
        finally:
            info.import_seconds = time.perf_counter() - start
        try:
            self.add(module, info)
        except PluginError as exc:
            if strict:
                raise
            info.status, info.error = "invalid", str(exc)
        except Exception as exc:  # a registration hook that raises: the plugin's bug, reported like an import failure
            info.status = "failed"
            info.error = f"a registration hook raised {type(exc).__name__}: {exc}"
            log.warning("%s failed: %s", info.origin, info.error)

    def add(self, module: Any, info: PluginInfo | None = None) -> PluginInfo:
        """Register one plugin object (usually a module) and collect its components.

        Tests and notebooks use this to add a plugin without installing it.
        """
        info = info or PluginInfo(getattr(module, "__name__", repr(module)), "(not installed)", "-", module=repr(module))
        _check_unmarked_hooks(module, info)
        try:
            self.manager.register(module, name=info.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{info.origin} is invalid: {exc}") from exc
        except ValueError as exc:  # pluggy: this object or name is registered already
            raise PluginError(f"{info.origin} cannot be registered twice: {exc}") from exc
        for caller in self.manager.get_hookcallers(module) or []:
            if caller.spec is None:  # a hook name no spec declares: misspelt
                self.manager.unregister(module)
                raise PluginError(
                    f"{info.origin} implements '{caller.name}', which is not a core hook"
                    f"{did_you_mean(caller.name, HOOK_NAMES)}",
                )
        provided: list[Component] = []
        try:
            for kind, hook_name in KINDS.items():
                for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
                    if impl.plugin is module:
                        provided += self._collect(kind, impl.function(), info)
        except BaseException:
            self.manager.unregister(module)  # all or nothing: a plugin that fails provides no component
            raise
        for found in provided:
            self.components[found.kind][found.name] = found
            info.components.setdefault(found.kind, []).append(found.name)
        self.plugins[info.name] = info
        return info

    def _collect(self, kind: str, provided: Any, info: PluginInfo) -> list[Component]:
        hook_name = KINDS[kind]
        if not isinstance(provided, Mapping) or not all(isinstance(k, str) for k in provided):
            raise PluginError(f"{info.origin}: {hook_name}() must return {{name: factory}}, got {provided!r}")
        found = []
        for name, factory in provided.items():
            if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
                raise PluginError(
                    f"{info.origin}: {kind} '{name}' has factory {factory!r}; "
                    "give a class, a function or a 'module:attribute' string"
                )
            if name in self.components[kind]:
                other = self.components[kind][name].plugin
                raise PluginError(
                    f"two plugins provide the {kind} '{name}': {other.origin} and {info.origin}\n"
                    f"  fix: disable one of them in the run, e.g. plugins: {{disable: [{info.name}]}}"
                )
            found.append(Component(kind, name, factory, info))
        return found

    def check_requirements(self, require: Mapping[str, str]) -> None:
        """Check ``plugins.require`` version specifiers against installed distributions."""
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        for dist, spec in require.items():
            path = f"plugins.require.{dist}"
            try:
                wanted = SpecifierSet(str(spec))
            except InvalidSpecifier:
                raise ConfigError(path, f"'{spec}' is not a version specifier", fix="write e.g. '>=1.0'") from None
            try:
                installed = importlib_metadata.version(dist)
            except importlib_metadata.PackageNotFoundError:
                raise ConfigError(path, f"distribution '{dist}' is not installed", fix=f"pip install '{dist}{spec}'") from None
            if not wanted.contains(installed, prereleases=True):
                raise ConfigError(
                    path, f"'{dist}' {installed} is installed, the run requires '{spec}'", fix=f"pip install '{dist}{spec}'"
                )

    # --------------------------------------------------------------- resolving
    def get(self, kind: str, name: str, path: str) -> Component:
        """The component ``name`` of ``kind``, or a ConfigError that tells the user why not."""
        found = self.components[kind].get(name)
        if found is not None:
            return found
        names = self.components[kind]
        lines = [f"no {kind} named '{name}'{did_you_mean(name, names)}", f"available {kind}s: {choices_text(names)}",
                 *self.not_loaded(name)]
        raise ConfigError(path, "\n  ".join(lines), fix="check the spelling, or install/enable the plugin that provides it")

    def not_loaded(self, name: str) -> list[str]:
        """A line for each plugin that did not load and so may provide ``name``, saying why."""
        lines = []
        for info in self.plugins.values():
            if info.provides and name not in info.provides:
                continue
            if info.status == "failed":
                lines.append(f"{info.origin} failed to import, it may provide '{name}': {info.error}")
            elif info.status == "unavailable":
                lines.append(f"{info.origin} is unavailable, it may provide '{name}': {info.error}")
            elif info.status == "disabled":
                lines.append(f"{info.origin} is {info.error}; it may provide '{name}'")
            elif info.status == "not selected":
                lines.append(f"{info.origin} is not loaded ({info.error}); it may provide '{name}'")
        return lines


def _dist_of(ep: Any) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "(unknown)", "-"
    return dist.metadata["Name"], dist.version


def _check_unmarked_hooks(module: Any, info: PluginInfo) -> None:
    """A function named like a hook but without ``@hookimpl`` would be silently ignored."""
    marker = "core_impl"
    for attr in dir(module):
        value = getattr(module, attr, None)
        if attr.startswith("core_") and isinstance(value, types.FunctionType) and not hasattr(value, marker):
            raise PluginError(f"{info.origin} defines {attr}() without @hookimpl; decorate it with core.hookimpl")

"""``core-plugins``: every installed plugin, its distribution, its components, its failures.

    core-plugins [--json] [--disable PLUGIN ...]   one row per component (a plugin without any: one row)
    core-plugins show NAME [--json]                a component's (or a plugin's components') options

Listing imports only the plugins' registration modules (never torch or a heavy optional
package, as long as plugins follow the lazy ``module:attr`` convention); ``show`` imports
the components it describes. The JSON of both is described in docs/writing-plugins.md.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from typing import Any

from core.cli import cli

SCHEMA_VERSION = 1
PROBLEMS = {"failed": "failed to import", "invalid": "is invalid", "unavailable": "is unavailable"}


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="core-plugins", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["show"], help="show NAME: the options of a component or plugin")
    p.add_argument("name", nargs="?", help="a component's or a plugin's name (with show)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--disable", action="append", default=[], metavar="PLUGIN", help="do not load this plugin")
    args = p.parse_args(argv)
    if bool(args.command) != bool(args.name):
        p.error("write core-plugins show NAME")

    from core.registry import Registry

    registry = Registry.load(disable=args.disable, strict=False)
    plugins = sorted(registry.plugins.values(), key=lambda info: info.name)
    if args.command == "show":
        found = _show(registry, args.name)
        if args.json:
            return _print_json({"plugins": [_plugin_row(i) for i in plugins if i.name == args.name], "components": found})
        for component in found:
            print(_component_text(component))
        return 0
    if args.json:
        return _print_json({"plugins": [_plugin_row(info) for info in plugins]})
    rows = [["kind", "component", "plugin", "distribution", "version", "status", "import ms"]]
    for info in plugins:
        owned = [(kind, name) for kind, names in info.components.items() for name in names] or [("-", "-")]
        rows += [[kind, name, info.name, info.dist, info.version, info.status, f"{info.import_seconds * 1000:.1f}"]
                 for kind, name in owned]
    print("\n".join(_columns(rows)))
    for info in plugins:
        if info.status in PROBLEMS:
            print(f"{info.origin} {PROBLEMS[info.status]}: {info.error}")
    return 0


def _print_json(document: dict[str, Any]) -> int:
    json.dump({"schema_version": SCHEMA_VERSION, **document}, sys.stdout, indent=2, default=repr)
    sys.stdout.write("\n")
    return 0


def _plugin_row(info: Any) -> dict[str, Any]:
    return {"plugin": info.name, "distribution": info.dist, "version": info.version, "module": info.module,
            "status": info.status, "error": info.error, "import_ms": round(info.import_seconds * 1000, 1),
            "components": info.components}


def _show(registry: Any, name: str) -> list[dict[str, Any]]:
    """Every component named ``name`` (of any kind) and every component of the plugin ``name``."""
    from core.errors import PluginError, did_you_mean

    found = [c for kind in registry.components.values() for c in kind.values()
             if c.name == name or c.plugin.name == name]
    if not found:
        info = registry.plugins.get(name)
        if info is not None:  # a plugin that provides nothing here: say why
            raise PluginError(f"{info.origin} is {info.status} and provides no component" +
                              (f": {info.error}" if info.error else ""))
        names = {n for kind in registry.components.values() for n in kind} | set(registry.plugins)
        raise PluginError(f"no plugin or component is named '{name}'{did_you_mean(name, names)}; core-plugins lists them")
    return [_describe(component) for component in found]


def _describe(component: Any) -> dict[str, Any]:
    """A component's kind, plugin, factory, docstring summary and options (or why it cannot load)."""
    from core.errors import CoreError
    from core.options import first_sentence, option_docs
    from core.resolve import CONTEXT_ARGS

    info = component.plugin
    row: dict[str, Any] = {"kind": component.kind, "name": component.name, "plugin": info.name,
                           "distribution": info.dist, "version": info.version, "factory": None, "doc": "",
                           "error": None, "options": []}
    try:
        factory = component.resolve()
    except (CoreError, ImportError) as exc:  # PluginUnavailable or a plugin's bug: shown, not raised
        return {**row, "factory": str(component.factory), "error": str(exc)}
    doc = inspect.cleandoc(factory.__doc__ or sys.modules[factory.__module__].__doc__ or "")  # its own, not a base's
    row |= {"factory": f"{factory.__module__}:{factory.__qualname__}", "doc": first_sentence(doc.split("\n\n")[0].replace("\n", " "))}
    return {**row, "options": option_docs(factory, skip=CONTEXT_ARGS.get(component.kind, ()))}


def _component_text(row: dict[str, Any]) -> str:
    from core.options import yaml_value

    lines = [f"{row['kind']} {row['name']}: plugin {row['plugin']} ({row['distribution']} {row['version']}), "
             f"{row['factory']}"]
    if row["doc"]:
        lines.append(f"  {row['doc']}")
    if row["error"]:
        return "\n".join([*lines, f"  unavailable: {row['error']}", ""])
    table = [["option", "type", "default", "doc"]] + [
        [o["name"], o["type"] or "any", "(required)" if o["required"] else yaml_value(o["default"]), o["doc"]]
        for o in row["options"]]
    lines += [f"  {line}" for line in _columns(table)] if row["options"] else ["  (no options)"]
    return "\n".join(lines) + "\n"


def _columns(rows: list[list[str]]) -> list[str]:
    """Rows of cells as aligned lines, one line per row whatever its length (for grep)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]

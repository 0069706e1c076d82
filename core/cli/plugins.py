"""``core-plugins``: every installed plugin, its distribution, its components, its failures.

Listing imports only the plugins' registration modules (never torch or a heavy optional
package, as long as plugins follow the lazy ``module:attr`` convention).
"""

from __future__ import annotations

import argparse
import json
import sys

from core.cli import cli


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="core-plugins", description=__doc__)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--disable", action="append", default=[], metavar="PLUGIN", help="do not load this plugin")
    args = p.parse_args(argv)

    from core.registry import Registry

    registry = Registry.load(disable=args.disable, strict=False)
    plugins = sorted(registry.plugins.values(), key=lambda info: info.name)
    if args.json:
        rows = [
            {"plugin": i.name, "distribution": i.dist, "version": i.version, "module": i.module, "status": i.status,
             "error": i.error, "import_ms": round(i.import_seconds * 1000, 1), "components": i.components}
            for i in plugins
        ]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0

    from rich.table import Table

    from core.report import make_console

    table = Table(title="core-train plugins (entry-point group core.plugins)")
    for column in ("plugin", "distribution", "version", "status", "import ms", "components"):
        table.add_column(column)
    for info in plugins:
        components = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in info.components.items())
        status = {"failed": "[red]failed[/red]", "invalid": "[red]invalid[/red]",
                  "unavailable": "[yellow]unavailable[/yellow]"}.get(info.status, info.status)
        table.add_row(info.name, info.dist, info.version, status, f"{info.import_seconds * 1000:.1f}", components)
    console = make_console()
    console.print(table)
    for info in plugins:
        if info.status in ("failed", "invalid", "unavailable"):
            colour = "yellow" if info.status == "unavailable" else "red"
            verb = {"failed": "failed to import", "invalid": "is invalid", "unavailable": "is unavailable"}[info.status]
            console.print(f"[{colour}]{info.origin} {verb}:[/{colour}] {info.error}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

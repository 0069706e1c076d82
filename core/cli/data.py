"""``core-data``: dataset tools.

    core-data info FORMAT [--option K=V ...]                 a format's metadata
    core-data convert --from FORMAT [--option K=V ...] --to TOOL [--to-option K=V ...] OUT
    core-data make-sessions [--option K=V ...] OUT           synthetic recording sessions (hdf5 tool)
    core-data inspect [--format TOOL] [--option K=V ...] [--json] PATH   what a dataset on disk holds
    core-data validate [--format TOOL] [--option K=V ...] PATH           every problem, exit 1 if any

Formats and tools come from plugins (``core-plugins`` lists them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.cli import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="core-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print a format's metadata (heads, shapes, split sizes, fields)")
    info.add_argument("format", help="a format name, e.g. digits")
    info.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a format option (repeatable)")
    convert = sub.add_parser("convert", help="write a dataset of any map-style format with a dataset tool")
    convert.add_argument("--from", dest="source", required=True, help="the source format, e.g. digits")
    convert.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a source format option")
    convert.add_argument("--to", dest="tool", required=True, help="the dataset tool, e.g. cifar100mh")
    convert.add_argument("--to-option", action="append", default=[], metavar="KEY=VALUE", help="a writer option")
    convert.add_argument("out", help="where to write the dataset")
    sessions = sub.add_parser("make-sessions", help="write synthetic sessions from a known linear-nonlinear-Poisson model")
    sessions.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                          help="sessions, trials, size, neurons, frames, classes, seed, chunk_rows, compression")
    sessions.add_argument("out", help="the folder to write session_XX.h5 files to")
    for name, text in (("inspect", "describe a dataset on disk"), ("validate", "check a dataset on disk")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("path")
        cmd.add_argument("--format", dest="tool", help="the dataset tool (default: recognised from the path)")
        cmd.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                         help="a tool option (repeatable; hdf5: keys.stim=images)")
        if name == "inspect":
            cmd.add_argument("--json", action="store_true", help="print JSON")
    return p


def _options(assignments: list[str]) -> dict[str, Any]:
    from core.config import apply_override

    options: dict[str, Any] = {}
    for assignment in assignments:
        apply_override(options, assignment)
    return options


def _tool(registry: Any, name: str | None, path: Path) -> Any:
    from core.errors import ConfigError, choices_text
    from core.resolve import check

    if name:
        return check(registry, "tool", name, "--format").build()
    tools = registry.components["tool"]
    for tool_name in tools:
        try:
            tool = check(registry, "tool", tool_name, "--format").build()
        except Exception:  # a tool that cannot load here (a missing extra) recognises nothing
            continue
        if tool.recognises(path):
            return tool
    raise ConfigError("--format", f"{path} is not a dataset any tool recognises", fix=f"name one of {choices_text(tools)}")


@cli
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from core.options import validate_options
    from core.registry import Registry
    from core.resolve import check

    registry = Registry.load()
    if args.command == "info":
        meta = check(registry, "format", {args.format: _options(args.option)}, "format").build().meta()
        fields = {name: {"shape": list(shape), "dtype": dtype} for name, (shape, dtype) in meta.fields.items()}
        print(json.dumps({"name": meta.name, "stim_shape": list(meta.stim_shape), "stim_axes": meta.stim_axes,
                          "stim_dtype": meta.stim_dtype, "heads": meta.heads, "split_sizes": meta.split_sizes,
                          "fields": fields}, indent=2))
        return 0
    if args.command == "convert":
        source = check(registry, "format", {args.source: _options(args.option)}, "--from").build()
        tool = check(registry, "tool", args.tool, "--to").build()
        options = validate_options(tool.write, _options(args.to_option), "--to-option", f"writer '{args.tool}'",
                                   skip=("source", "out"))
        tool.write(source, Path(args.out), **options)
        print(f"wrote {args.source} as {args.tool} to {args.out}")
        return 0
    if args.command == "make-sessions":
        tool = check(registry, "tool", "hdf5", "make-sessions").build()
        options = validate_options(tool.make_sessions, _options(args.option), "--option", "make-sessions", skip=("out",))
        tool.make_sessions(Path(args.out), **options)
        return 0
    path = Path(args.path)
    tool = _tool(registry, args.tool, path)
    method = tool.inspect if args.command == "inspect" else tool.validate
    options = validate_options(method, _options(args.option), "--option", f"core-data {args.command}",
                               skip=("path",))
    if args.command == "inspect":
        report = tool.inspect(path, **options)
        print(json.dumps(report, indent=2) if args.json else _readable(report))
        return 0
    problems = tool.validate(path, **options)
    for problem in problems:
        print(problem)
    print(f"{path}: {'valid' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _readable(report: dict[str, Any], indent: int = 0) -> str:
    lines = []
    for key, value in report.items():
        if isinstance(value, dict):
            lines.append(" " * indent + f"{key}:")
            lines.append(_readable(value, indent + 2))
        else:
            lines.append(" " * indent + f"{key}: {value}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

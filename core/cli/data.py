"""``core-data``: dataset tools. ``info`` describes any registered format."""

from __future__ import annotations

import argparse
import json
import sys

from core.cli import cli


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="core-data", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print a dataset's metadata (heads, shapes, split sizes)")
    info.add_argument("format", help="a format name, e.g. digits (see core-plugins)")
    info.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a format option (repeatable)")
    args = p.parse_args(argv)

    from core.config import apply_override
    from core.registry import Registry
    from core.resolve import check

    options: dict = {}
    for assignment in args.option:
        apply_override(options, assignment)
    fmt = check(Registry.load(), "format", {args.format: options}, "format").build()
    meta = fmt.meta()
    json.dump(
        {"name": meta.name, "stim_shape": list(meta.stim_shape), "stim_dtype": meta.stim_dtype,
         "heads": meta.heads, "split_sizes": meta.split_sizes},
        sys.stdout, indent=2,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

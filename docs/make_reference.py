"""Writes the reference pages generated from the code; with ``--check``, lists the stale ones.

    .venv/bin/python docs/make_reference.py           # rewrite both pages
    .venv/bin/python docs/make_reference.py --check   # exit 1 naming each stale page

docs/reference/components.md comes from the plugin registry (``ref_components``); the
tables of docs/config.md between ``<!-- generated: config keys ... -->`` markers come from
the pydantic models of core/config.py (``ref_config``). tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))

import ref_components  # noqa: E402
import ref_config  # noqa: E402
from core.registry import AUTOLOAD_ENV, Registry  # noqa: E402

COMMAND = ".venv/bin/python docs/make_reference.py"
COMPONENTS = DOCS / "reference" / "components.md"
CONFIG = DOCS / "config.md"


def generated() -> dict[Path, tuple[str, str]]:
    """{page: (its text now, its text generated from the code)}."""
    os.environ.pop(AUTOLOAD_ENV, None)  # the page documents every built-in plugin
    components = COMPONENTS.read_text() if COMPONENTS.exists() else ""
    config = CONFIG.read_text()
    return {
        COMPONENTS: (components, ref_components.render(Registry.load(strict=False), DOCS, components)),
        CONFIG: (config, ref_config.render(config)),
    }


def first_changes(old: str, new: str, count: int = 8) -> str:
    changed = [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    return "\n".join(f"    {line[:150]}" for line in changed[:count])


def problems() -> list[str]:
    """A message per stale page (with its first changed lines) or undocumented config key."""
    pages = generated()
    found = []
    for page, (old, new) in pages.items():
        if ref_components.stale(old, new) if page == COMPONENTS else old != new:
            found.append(f"{page.relative_to(DOCS.parent)} is stale; first changes:\n{first_changes(old, new)}")
    found += [f"docs/config.md: config key {key} has no meaning; write it in its table's last column"
              for key in ref_config.undocumented(pages[CONFIG][1])]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    if parser.parse_args(argv).check:
        found = problems()
        print("\n".join(found + [f"run: {COMMAND}"]) if found else "reference pages are current")
        return 1 if found else 0
    for page, (old, new) in generated().items():
        page.parent.mkdir(exist_ok=True)
        if new != old:
            page.write_text(new)
            print(f"wrote {page.relative_to(DOCS.parent)}")
    for key in ref_config.undocumented(CONFIG.read_text()):
        print(f"docs/config.md: config key {key} has no meaning yet; write it in its table's last column")
    return 0


if __name__ == "__main__":
    sys.exit(main())

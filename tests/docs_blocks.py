"""Finds the runnable blocks of the Markdown docs and runs them (for tests/test_docs.py).

A block is runnable when the line before it (blank lines between are allowed) is
``<!-- runnable -->``; CONTRIBUTING.md, "Docs that run", is the convention. By language:

- ``yaml``: a whole run config, checked with ``core-train --config FILE --dry-run``;
- ``python``: executed as a script;
- ``sh``, ``bash``, ``console``, an unmarked fence or an indented block: shell commands, one
  per line (``\\`` continues a line; with ``$ `` prompts, only prompted lines are commands,
  the rest is output). ``core-train``, ``core-plugins`` and ``core-data`` (bare or under
  ``.venv/bin/``) run in-process; a ``core-train`` command that trains gets ``SHORT``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MARKER = "<!-- runnable -->"
SHELL = {"", "sh", "bash", "shell", "console"}
# one epoch of two batches: a training command in the docs runs in seconds on the CPU
SHORT = ["--set", "trainer.max_epochs=1", "--set", "trainer.limit_train_batches=2",
         "--set", "trainer.limit_val_batches=2", "--set", "trainer.limit_test_batches=2"]


@dataclass
class Block:
    page: Path
    line: int  # 1-based, of the block's first line
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def blocks(page: Path) -> Iterator[Block]:
    """The runnable blocks of ``page``, in order; a marker without a block after it is an error."""
    lines = page.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        start = next((i for i in range(number + 1, len(lines)) if lines[i].strip()), len(lines))
        head = lines[start] if start < len(lines) else ""
        if head.startswith("```"):
            end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
            yield Block(page, start + 2, head[3:].strip().split(" ")[0], "\n".join(lines[start + 1:end]))
        elif head.startswith("    "):
            end = next((i for i in range(start, len(lines)) if lines[i].strip() and not lines[i].startswith("    ")),
                       len(lines))
            yield Block(page, start + 1, "", "\n".join(text[4:] for text in lines[start:end]))
        else:
            raise ValueError(f"{page.name}:{number + 1}: {MARKER} is not followed by a code block")


def commands(text: str) -> list[list[str]]:
    """A shell block's commands as argument lists (prompts, comments and output left out)."""
    joined = re.sub(r"\\\n\s*", " ", text).splitlines()
    if any(line.startswith("$ ") for line in joined):
        joined = [line[2:] for line in joined if line.startswith("$ ")]
    return [argv for line in joined if (argv := shlex.split(line, comments=True))]


def entry_points() -> dict[str, Callable[[list[str]], int]]:
    from core.cli import data, plugins, train

    return {"core-train": train.main, "core-plugins": plugins.main, "core-data": data.main}


def run_command(argv: list[str]) -> int:
    """One documented command, in-process: its exit status."""
    program, args = Path(argv[0]).name, argv[1:]
    mains = entry_points()
    if program not in mains:
        raise ValueError(f"the docs runner runs only {', '.join(mains)}, not {argv[0]}")
    if program == "core-train" and not {"--dry-run", "--print-config"} & set(args):
        args = [*args, *SHORT]
    return mains[program](args)


def run_block(block: Block, workdir: Path) -> None:
    """Run ``block`` in ``workdir``; raise AssertionError naming the block on a failure."""
    if block.language == "yaml":
        config = workdir / f"{block.page.stem}-{block.line}.yaml"
        config.write_text(block.text + "\n")
        argvs = [["core-train", "--config", str(config), "--dry-run"]]
    elif block.language == "python":
        exec(compile(block.text, block.where, "exec"), {"__name__": "__main__"})  # noqa: S102 (the docs' own code)
        return
    elif block.language in SHELL:
        argvs = commands(block.text)
    else:
        raise ValueError(f"{block.where}: a runnable block must be yaml, python or shell, not {block.language!r}")
    for argv in argvs:
        status = run_command(argv)
        assert status == 0, f"{block.where}: `{shlex.join(argv)}` exited with {status}"

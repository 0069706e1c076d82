"""The docs stay true: generated pages are current, runnable blocks run, no machine's paths."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from core.registry import AUTOLOAD_ENV
from tests.docs_blocks import SHORT, blocks, commands, run_block

ROOT = Path(__file__).resolve().parents[1]
# README first: the later pages use the run its commands train (runs/quickstart)
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
MACHINE_PATH = re.compile(r"(?<![\w.<~`])/(?:work|home|tmp|Users|root|mnt|scratch)\b")


def load_make_reference():
    spec = importlib.util.spec_from_file_location("make_reference", ROOT / "docs" / "make_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_pages_are_current(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    make_reference = load_make_reference()
    problems = make_reference.problems()
    assert not problems, "\n".join([*problems, f"regenerate with: {make_reference.COMMAND}"])


def test_docs_hold_no_paths_of_a_development_machine() -> None:
    found = [
        f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
        for page in PAGES
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert not found, "write a relative path or a placeholder (<workdir>, <repo>) instead:\n" + "\n".join(found)


def test_shell_blocks_split_into_commands() -> None:
    text = "$ core-train --config a.yaml \\\n    --dry-run   # check\nsome output\n$ core-plugins"
    assert commands(text) == [["core-train", "--config", "a.yaml", "--dry-run"], ["core-plugins"]]
    assert commands(".venv/bin/core-plugins   # list\n\n.venv/bin/core-data info digits") == [
        [".venv/bin/core-plugins"], [".venv/bin/core-data", "info", "digits"]]
    assert "trainer.max_epochs=1" in SHORT


def test_runnable_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every block marked ``<!-- runnable -->`` in README.md and docs/, in a copy of configs/."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    ran = []
    for page in PAGES:
        for block in blocks(page):
            run_block(block, tmp_path)  # on a failure pytest shows what the commands printed
            ran.append(block.where)
    assert {"README.md", "config.md", "notebook.md"} <= {where.split(":")[0] for where in ran}, ran


def test_config_md_example_is_what_print_config_prints(capsys: pytest.CaptureFixture) -> None:
    """docs/config.md says its first YAML block is the quickstart with every default filled in."""
    import yaml

    from core.cli import train

    page = (ROOT / "docs" / "config.md").read_text()
    example = next(block for block in blocks(ROOT / "docs" / "config.md") if block.language == "yaml")
    assert "`core-train --config configs/quickstart.yaml --print-config` prints" in page
    assert train.main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--print-config"]) == 0
    documented, printed = yaml.safe_load(example.text), yaml.safe_load(capsys.readouterr().out)
    differ = sorted(key for key in {*documented, *printed} if documented.get(key) != printed.get(key))
    assert not differ, (f"{example.where}: sections {differ} differ from what `core-train --config "
                        "configs/quickstart.yaml --print-config` prints; copy them from its output")

"""The example third-party package, installed for real, is found, used and disabled by name."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SMALL_RUN, run_cli

pytest_plugins = ("pytester",)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install examples/thirdparty-plugin into a folder put on PYTHONPATH (the venv stays clean)."""
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(ROOT / "examples" / "thirdparty-plugin")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    source = ROOT / "examples" / "thirdparty-plugin"
    for leftover in (source / "build", source / "core_thirdparty_example.egg-info"):  # setuptools builds in place
        shutil.rmtree(leftover, ignore_errors=True)
    return {"PYTHONPATH": str(target)}


def test_core_plugins_lists_it_and_shows_its_option(installed):
    result = run_cli("core-plugins", env=installed)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "core-thirdparty-example" in line)
    assert row.split()[:6] == ["transform", "invert", "invert", "core-thirdparty-example", "0.1.0", "loaded"]
    shown = run_cli("core-plugins", "show", "invert", env=installed)
    assert shown.returncode == 0, shown.stderr
    assert "transform invert: plugin invert (core-thirdparty-example 0.1.0), core_thirdparty_example.invert:Invert" in shown.stdout
    assert ["gain", "float", "1.0", "the", "factor"] in [line.split()[:5] for line in shown.stdout.splitlines()]


def test_its_own_tests_pass_with_the_kit_without_installing_it(pytester, monkeypatch):
    """examples/thirdparty-plugin/tests use only core.testing and the pytest11 fixtures."""
    example = ROOT / "examples" / "thirdparty-plugin"
    monkeypatch.syspath_prepend(str(example))
    result = pytester.runpytest_inprocess(str(example / "tests"), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_a_run_names_its_transform_and_disable_makes_it_fail_clearly(installed, write_config):
    path = write_config(SMALL_RUN.replace("transforms: [pixelnorm]", "transforms: [pixelnorm, {invert: {gain: 2.0}}]")
                        .replace("max_epochs: 2", "max_epochs: 1"))
    result = run_cli("core-train", "--config", path, env=installed)
    assert result.returncode == 0, result.stderr
    assert "test/digit_acc" in result.stdout
    used = (path.parent / "runs" / "small" / "plugins.json").read_text()
    assert '"distribution": "core-thirdparty-example"' in used

    disabled = run_cli("core-train", "--config", path, "--dry-run", "--set", "plugins.disable=[invert]", env=installed)
    assert disabled.returncode == 2
    assert "config error at data.transforms.1: no transform named 'invert'" in disabled.stderr
    assert "plugin 'invert' (core-thirdparty-example 0.1.0) is disabled by plugins.disable" in disabled.stderr
    assert "Traceback" not in disabled.stderr

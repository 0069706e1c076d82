"""The experiment plugin: the ``experiment:`` section (analysis), its figure, and the
``core-train experiment`` command."""

import csv

import numpy as np
import pytest

from core import ConfigError
from core.cli.train import main as core_train
from core.config import parse_config
from core.kinds import Step
from core.registry import Registry
from core.resolve import resolve
from core.run import prepare_run_dir
from plugins.experiment.figure import experiment_figure
from plugins.experiment.sweep import stimulus_window
from tests.conftest import SMALL_RUN, run_main
from tests.test_cli_errors import fails

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CONTRAST = {"stimulus_contrast": {"n_timesteps": 6, "stimulus_duration": 2}}


def resolved(experiment, registry=None):
    config = parse_config({"name": "r", "data": {"format": "digits", "transforms": ["pixelnorm", CONTRAST]},
                           "model": "recurrent_cnn", "experiment": experiment})
    return resolve(config, registry or Registry.load())


def test_the_section_is_checked_against_the_run_when_it_is_resolved():
    with pytest.raises(ConfigError, match="experiment.parameter: transform 'stimulus_contrast' has no option 'contrast' \\(did you mean 'stimulus_contrast'"):
        resolved({"parameter": "stimulus_contrast.contrast", "values": [0.5]})
    with pytest.raises(ConfigError, match="experiment.parameter: 'stimulus_durration.n_timesteps' must be <transform>.<option> naming a transform of data.transforms"):
        resolved({"parameter": "stimulus_durration.n_timesteps", "values": [3]})
    with pytest.raises(ConfigError, match="experiment.values.1: transform 'stimulus_contrast': stimulus_contrast must be in \\[0, 1\\], not 2"):
        resolved({"parameter": "stimulus_contrast.stimulus_contrast", "values": [0.5, 2]})
    with pytest.raises(ConfigError, match="experiment.values.0: 'abc' is not valid for option 'stimulus_contrast' of transform 'stimulus_contrast': expected float"):
        resolved({"parameter": "stimulus_contrast.stimulus_contrast", "values": ["abc"]})
    with pytest.raises(ConfigError, match="config error at experiment.values: is empty"):
        resolved({"parameter": "stimulus_contrast.stimulus_contrast", "values": []})
    with pytest.raises(ConfigError, match="config error at experiment: 'x' is not a mapping of the analysis' options"):
        resolved("x")
    run = resolved({"parameter": "stimulus_contrast.stimulus_contrast", "values": [0.2, 1]})
    (sweep,) = run.analyses
    assert [t.contrast for t in sweep.transforms] == [0.2, 1.0] and sweep.position == 1
    assert ("analysis", "experiment", "experiment") in [(u.kind, u.name, u.path) for u in run.used]  # in plugins.json


def test_without_the_plugin_the_section_is_an_unknown_key():
    registry = Registry.load(disable=["experiment"])
    with pytest.raises(ConfigError) as error:
        resolved({"parameter": "stimulus_contrast.stimulus_contrast", "values": [1]}, registry)
    assert str(error.value).startswith("config error at experiment: unknown key 'experiment'\n  plugin 'experiment'")
    assert "is disabled by plugins.disable; it may provide 'experiment'" in str(error.value)


def test_a_bad_experiment_fails_the_dry_run(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", str(path), "--set", "experiment.parameter=pixelnorm.meen", "--set", "experiment.values=[1]",
                   "--dry-run"], "config error at experiment.parameter: transform 'pixelnorm' has no option 'meen' (did you mean 'mean'?)")
    fails(capsys, ["--config", str(path), "--set", "experiment={parameter: pixelnorm.mean, values: [1], paramter: x}", "--dry-run"],
          "config error at experiment.paramter:", "(did you mean 'parameter'?)")
    fails(capsys, ["--config", str(path), "--set", "experimnet={}", "--print-config"],
          "config error at experimnet: unknown key 'experimnet' (did you mean 'experiment'?)")


def test_overwrite_removes_an_earlier_experiments_files(tmp_path):
    config = parse_config({"name": "r", "output_dir": str(tmp_path), "data": {"format": "digits"}, "model": "simple_cnn"})
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "experiment.csv").write_text("value\n")
    run_dir.joinpath("checkpoints").mkdir()
    run_dir.joinpath("checkpoints", "last.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"already holds a run \(checkpoints, experiment.csv\)"):
        prepare_run_dir(config, resume=False, overwrite=False, registry=(registry := Registry.load()))
    prepare_run_dir(config, resume=False, overwrite=True, registry=registry)
    assert not (run_dir / "experiment.csv").exists()


def test_contrast_experiment_end_to_end_and_from_a_checkpoint(tmp_path, capsys):
    args = ["--config", "configs/contrast_experiment.yaml", "--set", f"output_dir={tmp_path}", "--set", "trainer.max_epochs=4",
            "--set", "trainer.enable_progress_bar=false"]
    result = run_main("core-train", *args)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "contrast_experiment"
    rows = list(csv.DictReader(open(run_dir / "experiment.csv")))
    assert len(rows) == 6 * 12 and (run_dir / "experiment.png").is_file()
    on_steps = range(2, 8)

    def mean_on(value):
        return np.mean([float(r["accuracy"]) for r in rows if float(r["value"]) == value and int(r["timestep"]) in on_steps])

    assert mean_on(1.0) > 0.5 > 0.1 * 3  # well above chance (0.1) at full contrast
    assert mean_on(0.1) < mean_on(1.0) - 0.2  # and lower at the lowest contrast
    (run_dir / "experiment.csv").unlink()
    again = run_main("core-train", "experiment", *args)  # the best checkpoint by default
    assert again.returncode == 0, again.stderr
    assert f"checkpoint: {run_dir / 'checkpoints' / 'best.ckpt'}" in again.stdout
    assert "experiment digit peak accuracy @ stimulus_contrast.stimulus_contrast=1.0" in again.stdout
    assert list(csv.DictReader(open(run_dir / "experiment.csv"))) == rows  # the same weights: the same accuracies
    assert core_train(["experiment", *args, "--checkpoint", str(tmp_path / "nope.ckpt")]) == 2
    assert "config error at --checkpoint: no checkpoint at" in capsys.readouterr().err
    assert core_train([*args, "--checkpoint", str(run_dir / "checkpoints" / "best.ckpt")]) == 2
    assert "--checkpoint names what validate, test, experiment or predict evaluates" in capsys.readouterr().err
    assert core_train([*args, "--experiment-only"]) == 2  # the flag this command replaced
    assert "config error at --experiment-only: is now the command core-train experiment" in capsys.readouterr().err


def test_the_command_needs_the_section(capsys, write_config):
    fails(capsys, ["experiment", "--config", str(write_config(SMALL_RUN))],
          "config error at experiment: core-train experiment runs the config's experiment section, and it has none")


def _rows(values: list[float], steps: int = 12) -> list[dict]:
    return [{"value": v, "timestep": t, "head": "digit", "accuracy": 0.1 + v * 0.8 * (2 <= t < 8)}
            for v in values for t in range(steps)]


def _spans(ax: object) -> list[tuple[float, float]]:
    return sorted((p.get_x(), p.get_x() + p.get_width()) for p in ax.patches)  # axvspan's rectangles


def test_experiment_figure_shades_the_stimulus_and_draws_chance() -> None:
    from plugins.stimulus_timing.schedules import StimulusContrast, StimulusDuration

    values = [0.2, 1.0]
    windows = [stimulus_window([Step("data.transforms.0", "pixelnorm", object()),
                                Step("data.transforms.1", "stimulus_contrast", StimulusContrast(12, 6, 2, c))])
               for c in values]
    assert windows[0] == [False] * 2 + [True] * 6 + [False] * 4
    fig = experiment_figure(_rows(values), "stimulus_contrast.stimulus_contrast", windows, {"digit": 10})
    (ax,) = fig.axes
    assert _spans(ax) == [(1.5, 7.5)]  # one shared window, grey
    chance = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [0.1, 0.1]
    plt.close(fig)

    # a sweep that moves the window: one span per value
    windows = [stimulus_window([Step("data.transforms.0", "stimulus_duration", StimulusDuration(12, d, 2))])
               for d in (2, 4)]
    fig = experiment_figure(_rows([2, 4]), "stimulus_duration.stimulus_duration", windows, {"digit": 10})
    assert _spans(fig.axes[0]) == [(1.5, 3.5), (1.5, 5.5)]
    plt.close(fig)

    fig = experiment_figure(_rows([1.0], steps=1), "x.y", [None], None)  # no schedule, no classes: nothing added
    assert _spans(fig.axes[0]) == [] and all(line.get_linestyle() != "--" for line in fig.axes[0].get_lines())
    plt.close(fig)

from pathlib import Path

import pytest

from core import ConfigError, DataFormat, DatasetMeta, hookimpl
from core.config import parse_config
from core.registry import Registry
from core.resolve import resolve

EVENTS: list[str] = []


class SpyFormat(DataFormat):
    def __init__(self, size: int = 8) -> None:
        EVENTS.append("format built")

    def meta(self) -> DatasetMeta:
        return DatasetMeta("spy", (1, 8, 8), {"digit": 10}, {"train": 4, "val": 2, "test": 2})

    def open(self, split):
        EVENTS.append(f"opened {split}")
        raise AssertionError("resolve must not load data")


class SpyPlugin:
    @hookimpl
    def core_data_formats(self):
        return {"spy": SpyFormat}


@pytest.fixture
def registry():
    EVENTS.clear()
    registry = Registry.load()
    registry.add(SpyPlugin())
    return registry


def config(**model):
    return parse_config({"name": "r", "data": {"format": "spy", "transforms": ["pixelnorm"]},
                         "model": {"simple_cnn": model}})


def test_every_option_is_checked_before_anything_is_built(registry):
    with pytest.raises(ConfigError, match="model.simple_cnn.fc_hiden"):
        resolve(config(fc_hiden=3), registry)
    assert EVENTS == []


def test_resolve_builds_without_loading_data(registry):
    resolved = resolve(config(conv1=4), registry)
    assert EVENTS == ["format built"]
    assert [u.name for u in resolved.used] == ["spy", "uint8", "pixelnorm", "random", "simple_cnn", "csv", "tensorboard",
                                               "lr_monitor", "epoch_summary", "curves", "progress_bar", "model_summary"]
    assert resolved.prepare == [] and [s.name for s in resolved.device] == ["pixelnorm"]  # uint8: on the device
    assert resolved.loss_weights == {"digit": 1.0}
    assert resolved.used[0].row()["distribution"] == "(not installed)"


def test_run_directory_without_a_checkpoint_starts_again_one_with_one_is_kept(tmp_path, registry):
    from core.errors import ConfigError as Refused
    from core.run import prepare_run_dir

    config = parse_config({"name": "r", "output_dir": str(tmp_path), "data": {"format": "digits"}, "model": "simple_cnn"})
    run_dir = prepare_run_dir(config, resume=False, overwrite=False, registry=registry)
    (run_dir / "metrics.csv").write_text("epoch\n")  # stopped before its first checkpoint
    assert prepare_run_dir(config, resume=False, overwrite=False, registry=registry) == run_dir and not (run_dir / "metrics.csv").exists()
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(Refused, match="already holds a run"):
        prepare_run_dir(config, resume=False, overwrite=False, registry=registry)
    assert prepare_run_dir(config, resume=True, overwrite=False, registry=registry) == run_dir
    (run_dir / "checkpoints" / "last.ckpt").rename(run_dir / "checkpoints" / "best.ckpt")  # last.ckpt deleted
    (run_dir / "metrics.csv").write_text("epoch\n0\n")
    with pytest.raises(Refused, match=r"holds a trained run \(best.ckpt\) whose last.ckpt is gone, so it cannot be "
                                      r"resumed\n  fix: add --overwrite"):
        prepare_run_dir(config, resume=False, overwrite=False, registry=registry)
    assert (run_dir / "metrics.csv").is_file()  # was deleted with the whole run, silently
    home = parse_config({"name": "r", "output_dir": "~/runs", "data": {"format": "digits"}, "model": "simple_cnn"})
    assert home.output_dir == str(Path.home() / "runs")  # as Lightning's checkpoints would read it

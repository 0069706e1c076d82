"""Several datasets per run: config forms, grouped batches, the curriculum sampler, the response
model and its metrics, the warm-up schedule, DDP on the CPU, and the end-to-end recovery run."""

from __future__ import annotations

import re
import shutil
import textwrap

import h5py
import numpy as np
import pytest
import torch

from core import ConfigError
from core.config import parse_config
from core.data import GroupedBatches, IndexBatches
from core.datasets import dataset_specs
from core.kinds import InOrder
from core.responses import Correlations
from core.schedules import linear_warmup_cosine
from plugins.curriculum.sampler import ContrastWeighted
from tests.conftest import run_cli, run_main

BASE = {"name": "m", "model": "shared_core_readout", "data": {"transforms": ["pixelnorm"]}}


def config(**extra):
    return parse_config({**BASE, **extra})


def test_a_datasets_list_inherits_datas_parts():
    specs = dataset_specs(config(datasets=[{"name": "a", "format": "digits"},
                                           {"name": "b", "format": "digits", "sampler": "sequential"}]))
    assert [(s.name, s.sampler, s.transforms) for s in specs] == [("a", "random", ["pixelnorm"]),
                                                                   ("b", "sequential", ["pixelnorm"])]
    assert specs[1].at("format") == "datasets.1.format"


def test_a_datasets_dir_and_max_datasets(tmp_path):
    for name in ("s1", "s2", "s3"):
        (tmp_path / f"{name}.yaml").write_text("format: digits\n")
    specs = dataset_specs(config(datasets_dir=str(tmp_path), max_datasets=2))
    assert [s.name for s in specs] == ["s1", "s2"]
    with pytest.raises(ConfigError, match="is 5, but the folder .* holds 3 datasets"):
        dataset_specs(config(datasets_dir=str(tmp_path), max_datasets=5))
    (tmp_path / "s4.yaml").write_text("format: digits\nnmae: x\n")
    with pytest.raises(ConfigError, match=r"s4.yaml: nmae: unknown key 'nmae' \(did you mean 'name'\?\)"):
        dataset_specs(config(datasets_dir=str(tmp_path)))


def test_a_datasets_dir_changed_after_training_is_refused_on_resume_and_said_on_evaluation(tmp_path, caplog):
    from core.datasets import read_from_dir
    from core.evaluate import warn_if_trained_otherwise
    from core.resume import check_resume

    for name, size in (("s1", 8), ("s2", 16)):
        (tmp_path / f"{name}.yaml").write_text(f"format: {{digits: {{image_size: {size}}}}}\n")
    run = config(datasets_dir=str(tmp_path))
    trained = {"config": run.model_dump(mode="json"), "datasets_read": read_from_dir(run)}
    assert check_resume({"hyper_parameters": trained}, run) == []
    (tmp_path / "s1.yaml").write_text("format: {digits: {image_size: 16}}\n")  # sessions swapped, one added
    (tmp_path / "s3.yaml").write_text("format: digits\n")
    with pytest.raises(ConfigError, match=r"(?s)config error at datasets_dir \(s1\).format.digits.image_size: --resume "
                                          r"continues the run as it was trained.*: 8 -> 16\n.*datasets_dir \(s3\): None ->"):
        check_resume({"hyper_parameters": trained}, run)
    warn_if_trained_otherwise(trained, run, tmp_path / "best.ckpt")
    assert "was trained with another config (datasets_dir (s1).format.digits.image_size: 8 -> 16; " in caplog.text


def test_two_datasets_with_one_name_and_data_named_twice_are_errors():
    with pytest.raises(ConfigError, match=r"datasets.1.name: dataset name 'a' is also used by datasets.0"):
        dataset_specs(config(datasets=[{"name": "a", "format": "digits"}, {"name": "a", "format": "digits"}]))
    with pytest.raises(ConfigError, match="both data.format and datasets given"):
        parse_config({**BASE, "data": {"format": "digits"}, "datasets": [{"name": "a", "format": "digits"}]})


def test_grouped_batches_come_from_one_dataset_each_and_ranks_get_as_many():
    def orders(rank):
        return [IndexBatches(InOrder(), n, 4, False, 0, lambda: 0, lambda: (rank, 2)) for n in (16, 8, 9)]

    round_robin = list(GroupedBatches(orders(0), "round_robin", 0, lambda: 0))
    assert [k for k, _ in round_robin] == [0, 1, 2, 0, 2]  # 8, 4 and 5 indices per rank in batches of 4
    proportional = list(GroupedBatches(orders(1), "proportional", 0, lambda: 0))
    assert sorted(k for k, _ in proportional) == [0, 0, 1, 2, 2]
    assert len(GroupedBatches(orders(0), "proportional", 0, lambda: 0)) == len(GroupedBatches(orders(1), "round_robin", 0, lambda: 0))


def test_contrast_weighted_starts_on_high_contrast_ends_uniform_and_shards_disjointly():
    contrast = np.repeat([0.1, 1.0], 500)
    sampler = ContrastWeighted(start_exponent=3.0, ramp_steps=100)
    sampler.bind({"contrast": contrast})
    early = sampler.indices(1000, epoch=0, seed=0, rank=0, world_size=1)
    assert (contrast[early] == 1.0).mean() > 0.95
    sampler.set_step(100)
    late = sampler.indices(1000, epoch=0, seed=0, rank=0, world_size=1)
    assert 0.4 < (contrast[late] == 1.0).mean() < 0.6
    sampler.bind({"contrast": np.linspace(0.05, 1, 1001)})
    ranks = [sampler.indices(1001, epoch=2, seed=0, rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 501 and not set(ranks[0]) & set(ranks[1])
    assert sampler.exponent(0) == 3.0 and sampler.exponent(50) == 1.5 and sampler.exponent(10**6) == 0.0


def test_correlations_over_the_epoch_match_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 3)), rng.random((50, 3))
    y[:, 2] = 1.0  # a silent neuron counts as 0
    stats = Correlations()
    for part in np.array_split(np.arange(50), 4):
        stats.add("s", torch.from_numpy(x[part]), torch.from_numpy(y[part]))
    expected = np.mean([np.corrcoef(x[:, i], y[:, i])[0, 1] for i in range(2)] + [0.0])
    assert stats.compute()["s"].item() == pytest.approx(expected, abs=1e-5)


def test_linear_warmup_then_cosine_to_the_floor():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = linear_warmup_cosine(optimizer, warmup_steps=4, total_steps=14, floor=0.1)
    rates = []
    for _ in range(16):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[9] == pytest.approx(0.55) and rates[14] == pytest.approx(0.1) and rates[15] == pytest.approx(0.1)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sessions")
    done = run_main("core-data", "make-sessions", "--option", "sessions=2", "--option", "trials=400",
                   "--option", "size=16", "--option", "neurons=20", str(folder))
    assert done.returncode == 0, done.stderr
    return folder


def multi_config(tmp_path, sessions, extra=""):
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(f"""
        name: multi
        output_dir: {tmp_path / 'runs'}
        data: {{transforms: [pixelnorm], batch_size: 32,
                sampler: {{contrast_weighted: {{ramp_steps: 20}}}}}}
        datasets:
          - {{name: s0, format: {{hdf5: {{paths: {sessions}/session_00.h5}}}}}}
          - {{name: s1, format: {{hdf5: {{paths: {sessions}/session_01.h5, mode: lazy}}}}}}
        model: {{shared_core_readout: {{channels: 8, layers: 2}}}}
        optim: {{lr: 0.005, scheduler: linear_warmup_cosine, warmup_steps: 5}}
        trainer: {{max_epochs: 4, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}}
    """) + extra)
    return path


def test_the_shared_core_recovers_the_known_model_end_to_end(tmp_path, sessions):
    data = tmp_path / "data"
    shutil.copytree(sessions, data)  # a copy: its files are replaced below
    path = multi_config(tmp_path, data)
    trained = run_main("core-train", "--config", path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    # an untrained model scores about 0 (-0.014 when measured with max_steps=1, lr=1e-9); trained, 0.56
    assert float(re.search(r"test/corr = ([-\d.]+)", trained.stdout).group(1)) > 0.3, trained.stdout
    assert "test/s0/corr" in trained.stdout and "test/s1/corr" in trained.stdout
    assert re.search(r"epoch 3 \| train/loss [-\d.]+ \| val/corr", trained.stdout + trained.stderr)
    # predictions: the responses of each session, and its labels as they are (the model predicts none)
    predicted = run_main("core-train", "predict", "--config", path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    with h5py.File(tmp_path / "runs" / "multi" / "predictions" / "test.h5") as f:
        assert f["s1/responses"].shape == (len(f["s1/index"]), 20) and len(f["s1/label/label"]) == len(f["s1/index"])
    # an accuracy experiment on a response model: refused when resolved (it crashed after the test)
    refused = run_main("core-train", "--config", path, "--dry-run", "--set",
                       "experiment={parameter: pixelnorm.scale, values: [255.0, 510.0]}")
    assert refused.returncode == 2 and "config error at experiment: measures each label head's test accuracy, " \
        "and this run's model predicts neural responses" in refused.stderr
    # resuming on data whose sessions now have other neuron counts: one clear error
    other = tmp_path / "other"
    assert run_main("core-data", "make-sessions", "--option", "sessions=2", "--option", "trials=400", "--option",
                   "size=16", "--option", "neurons=25", str(other)).returncode == 0
    moved = tmp_path / "moved.yaml"
    moved.write_text(path.read_text().replace(str(data), str(other)))
    refused = run_main("core-train", "--config", moved, "--resume", "--set", "name=multi")
    assert refused.returncode == 2 and "config error at datasets: --resume continues the run as it was trained" in refused.stderr
    for session in other.glob("*.h5"):  # the same paths, other contents
        shutil.copy(session, data / session.name)
    resumed = run_main("core-train", "--config", path, "--resume", "--set", "trainer.max_epochs=5")
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert "does not fit this run's model" in resumed.stderr and "model.readouts.s0" in resumed.stderr
    # the core of a trained run loads into a new run
    pretrained = run_main("core-train", "--config", path, "--set", "name=pretrained", "--set", "trainer.max_epochs=1",
                          "--set", f"model.shared_core_readout.pretrained={tmp_path}/runs/multi/checkpoints/best.ckpt")
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    assert "pretrained: loaded 14 of 14 core tensors" in pretrained.stderr + pretrained.stdout


def test_a_sampler_needing_contrast_on_data_without_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: x\ndata: {format: digits, sampler: contrast_weighted}\nmodel: simple_cnn\n")
    done = run_main("core-train", "--config", path, "--dry-run")
    assert done.returncode == 2
    assert ("config error at data.sampler: sampler 'contrast_weighted' weights samples by contrast, but dataset "
            "'digits' has no such field") in done.stderr


DDP_RECORDER = """
    import os
    import numpy as np
    from core import hookimpl
    from plugins.samplers.order import RandomOrder

    class Recording(RandomOrder):
        def indices(self, n, *, epoch, seed, rank, world_size):
            order = super().indices(n, epoch=epoch, seed=seed, rank=rank, world_size=world_size)
            np.save(os.path.join(os.environ["RECORD_DIR"], f"rank{rank}_of{world_size}_n{n}_epoch{epoch}.npy"), order)
            return order

    @hookimpl
    def core_samplers():
        return {"recording": Recording}
"""


def test_ddp_on_two_cpu_processes_gives_each_rank_disjoint_samples(tmp_path, sessions, make_plugin_dist):
    make_plugin_dist("recorder", DDP_RECORDER)
    record = tmp_path / "record"
    record.mkdir()
    path = multi_config(tmp_path, sessions)
    path.write_text(path.read_text().replace("sampler: {contrast_weighted: {ramp_steps: 20}}", "sampler: recording")
                    .replace("max_epochs: 4, accelerator: cpu", "max_epochs: 1, accelerator: cpu, strategy: ddp, devices: 2"))
    done = run_cli("core-train", "--config", path, env={"RECORD_DIR": str(record)})
    assert done.returncode == 0, done.stderr[-4000:]
    assert "test/corr" in done.stdout
    for epoch in (0,):
        for n in (320, 320):  # each session's training split
            ranks = [np.load(record / f"rank{r}_of2_n{n}_epoch{epoch}.npy") for r in (0, 1)]
            assert len(ranks[0]) == len(ranks[1]) == n // 2
            assert not set(ranks[0].tolist()) & set(ranks[1].tolist())


def test_shared_core_readout_refuses_an_even_kernel_and_dotted_names():
    from core import DatasetMeta
    from plugins.shared_core_readout.model import SharedCoreReadout

    meta = DatasetMeta("s", (1, 8, 8), {}, {"train": 1}, fields={"responses": ((3,), "float32")})
    with pytest.raises(ValueError, match="kernel odd"):
        SharedCoreReadout(meta, {"s": meta}, kernel=4)
    with pytest.raises(ValueError, match=r"contain '\.'"):
        SharedCoreReadout(meta, {"m1.s0": meta})


def test_the_epochs_order_is_drawn_at_its_first_step_and_a_restored_epoch_skips_what_ran():
    from core.data import EpochPosition

    sampler = ContrastWeighted(ramp_steps=100)
    sampler.bind({"contrast": np.linspace(0.1, 1, 40)})
    position = EpochPosition()
    order = IndexBatches(sampler, 40, 8, True, 0, lambda: 3, lambda: (0, 1), position=position, step=lambda: 60)
    full = [b.tolist() for b in order]
    assert sampler.step == 60 and len(full) == 5 and (position.epoch, position.start_step) == (3, 60)
    position.restored = {"epoch": 3, "start_step": 60, "done": 2}  # a checkpoint taken after 2 batches
    order.step = lambda: 62  # the restored global step: the order is still drawn at the epoch's first
    assert [b.tolist() for b in order] == full[2:] and sampler.step == 60


def test_max_datasets_needs_several_and_a_one_dataset_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="max_datasets: applies to datasets or datasets_dir, not to one data.format"):
        parse_config({**BASE, "data": {"format": "digits"}, "max_datasets": 2})
    path = tmp_path / "run.yaml"
    path.write_text("name: x\ndata: {transforms: [pixelnorm]}\nmodel: simple_cnn\n"
                    "datasets: [{name: a, format: digits}, {name: b, format: digits}]\n")
    done = run_main("core-train", "--config", path, "--dry-run")
    assert done.returncode == 2
    assert "config error at model: model 'simple_cnn' is built for one dataset, but this run has 2" in done.stderr


def test_pretrained_without_a_file_and_data_without_responses_are_refused():
    from core import DatasetMeta
    from plugins.shared_core_readout.model import SharedCoreReadout

    meta = DatasetMeta("s", (1, 8, 8), {}, {"train": 1}, fields={"responses": ((3,), "float32")})
    with pytest.raises(ValueError, match="pretrained: no checkpoint at nowhere.ckpt"):
        SharedCoreReadout(meta, {"s": meta}, pretrained="nowhere.ckpt")
    from core.kinds import restoring

    with restoring():  # resumed or evaluated: its own checkpoint's weights follow; the file may be gone
        SharedCoreReadout(meta, {"s": meta}, pretrained="nowhere.ckpt")
    bare = DatasetMeta("d", (1, 8, 8), {"digit": 10}, {"train": 1})
    with pytest.raises(ValueError, match="dataset 'd' has no responses to predict"):
        SharedCoreReadout(bare, {"d": bare})
    timed = DatasetMeta("s", (4, 1, 8, 8), {}, {"train": 1}, fields={"responses": ((3,), "float32")}, stim_axes="TCHW")
    with pytest.raises(ValueError, match=r"so the model predicts \(T, neurons\), but dataset 's' has responses \(3,\)"):
        SharedCoreReadout(timed, {"s": timed})  # a stimulus timing transform on per-trial sessions

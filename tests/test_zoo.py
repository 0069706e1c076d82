"""The zoo's models (plugin ``zoo``): shapes for any heads, channels and input size, bf16
autocast, no host synchronisation, the config errors of bad options and too-small inputs,
``pretrained`` reports, and one real CLI run."""

from __future__ import annotations

import functools
import logging
import re

import pytest
import torch
import yaml

from core import ConfigError, DatasetMeta
from core.config import parse_config
from core.registry import Registry
from core.resolve import resolve
from core.testing import HostSyncs
from plugins.zoo.pretrained import load_pretrained
from tests.conftest import ROOT, run_main

# small option sets of each model (every layer kind, a few thousand parameters): {case: (model, options)}
TINY = {
    "resnet18": ("resnet", {"depth": 18, "width": 4}),
    "resnet9": ("resnet", {"depth": 9, "width": 4}),
    "convnext": ("convnext", {"depths": [1, 1], "dims": [8, 16], "drop_path": 0.2}),
    "vit": ("vit", {"patch": 4, "dim": 16, "depth": 2, "num_heads": 2, "drop_path": 0.2}),
    "efficientnet": ("efficientnet", {"width": 0.1, "depth": 0.1}),
}


@functools.cache
def registry() -> Registry:
    return Registry.load()


def build(case: str, meta: DatasetMeta, **options) -> torch.nn.Module:
    """The model of ``case`` from the installed plugins, its TINY options updated with ``options``."""
    name, tiny = TINY[case]
    return registry().get("model", name, "model").resolve()(meta, **{**tiny, **options})


def meta(shape=(3, 32, 32), heads=None) -> DatasetMeta:
    return DatasetMeta("digits", shape, heads or {"digit": 10}, {"train": 8})


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("shape", [(1, 16, 16), (5, 24, 40)])
def test_one_head_per_dataset_head_for_any_channels_and_input_size(name, shape):
    model = build(name, meta(shape, {"digit": 10, "parity": 2}))
    out = model({"stim": torch.randn(2, *shape)})
    assert {head: tuple(logits.shape) for head, logits in out.items()} == {"digit": (2, 10), "parity": (2, 2)}


@pytest.mark.parametrize("name", TINY)
def test_a_training_step_under_bf16_autocast_is_finite_and_waits_for_nothing(name):
    model = build(name, meta((3, 16, 16))).train()
    stim = torch.randn(4, 3, 16, 16, dtype=torch.bfloat16)  # bf16-mixed hands the model bf16 stimuli
    with HostSyncs() as syncs:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model({"stim": stim})["digit"]
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.arange(4))
        loss.backward()
    assert syncs.total == 0, syncs.counts
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_shipped_sizes_have_the_papers_parameter_counts():
    counts = {case: sum(p.numel() for p in build(case, meta(), **options).parameters()) for case, options in {
        "resnet18": {"width": 64}, "convnext": {"depths": [2, 2, 6, 2], "dims": [40, 80, 160, 320]},
        "efficientnet": {"width": 1.0, "depth": 1.0}}.items()}
    # with a 10-class head: ResNet-18 11.2 M, ConvNeXt-atto 3.4 M (3.7 M with ImageNet's head), EfficientNet-B0 4.0 M
    assert counts == {"resnet18": 11_173_962, "convnext": 3_376_290, "efficientnet": 4_020_358}


def resolve_run(model: dict, image_size: int = 32, transforms: list | None = None):
    config = parse_config({"name": "zoo", "data": {"format": {"digits": {"image_size": image_size, "channels": 3}},
                                                   "transforms": transforms or ["pixelnorm"]}, "model": model})
    return resolve(config, registry())


@pytest.mark.parametrize("model, image_size, path, message", [
    ({"vit": {"patch": 5}}, 32, "model.vit.patch", "patch 5 does not divide the input 32x32\n  fix: use a patch "
                                                   "that divides both sides (one of [1, 2, 4, 8, 16, 32]) or an "
                                                   "image_size divisible by 5"),
    ({"vit": {"patch": 16}}, 8, "model.vit.patch", "patch 16 is larger than the input 8x8"),
    ({"vit": {"dim": 64, "num_heads": 3}}, 32, "model.vit.num_heads", "dim 64 does not split into 3 heads"),
    ({"convnext": {}}, 8, "model.convnext", "the input 8x8 is smaller than the model's total stride 16\n  fix: use "
                                            "a larger image_size, a smaller stem or fewer stages"),
    ({"convnext": {"depths": [2, 2], "dims": [8]}}, 32, "model.convnext.dims", "2 depths but 1 dims"),
    ({"convnext": {"drop_path": 1.0}}, 32, "model.convnext.drop_path", "drop_path must be in [0, 1), not 1.0"),
    ({"efficientnet": {"stem_stride": 2}}, 16, "model.efficientnet", "the input 16x16 is smaller than the model's "
                                                                      "total stride 32"),
    ({"efficientnet": {"stem_stride": 3}}, 32, "model.efficientnet.stem_stride", "expected one of 1, 2"),
    ({"efficientnet": {"width": 0}}, 32, "model.efficientnet.width", "width is a multiplier and must be positive"),
    ({"resnet": {"width": 0}}, 32, "model.resnet.width", "width must be at least 1, not 0"),
    ({"resnet": {"depth": 50}}, 32, "model.resnet.depth", "expected one of 9, 18, 34"),
])
def test_bad_options_and_inputs_too_small_are_config_errors_at_the_options_path(model, image_size, path, message):
    with pytest.raises(ConfigError) as caught:
        resolve_run(model, image_size)
    assert caught.value.path == path and message in str(caught.value)


def test_presentations_over_time_are_refused_with_the_alternative():
    timing = ["pixelnorm", {"stimulus_duration": {"n_timesteps": 4, "stimulus_duration": 2}}]
    with pytest.raises(ConfigError, match=r"at model.resnet: resnet takes images \(C, H, W\); dataset 'digits' gives "
                                          r"stim of shape \(4, 3, 32, 32\)\n  fix: for presentations over time use "
                                          "recurrent_cnn"):
        resolve_run({"resnet": {}}, transforms=timing)


def save_checkpoint(path, model: torch.nn.Module) -> str:
    """A checkpoint as a core-train run writes it: the model's tensors under ``model.``, other state beside."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()} | {"best_val_acc": torch.tensor(0.5)}
    torch.save({"state_dict": state, "epoch": 3}, path)
    return str(path)


def test_pretrained_reports_matched_missing_unexpected_and_other_shapes(tmp_path, caplog):
    source = build("resnet9", meta(heads={"digit": 10, "odd": 2}))
    ckpt = save_checkpoint(tmp_path / "best.ckpt", source)
    with caplog.at_level(logging.INFO, logger="core"):
        same = build("resnet9", meta(heads={"digit": 10, "odd": 2}), pretrained=ckpt)
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), source.state_dict().values()))
    total = len(source.state_dict())
    assert (f"pretrained: loaded {total} of {total} tensors from {ckpt}: {total} matched, 0 missing, 0 unexpected, "
            "0 of other shapes") in caplog.text
    # another dataset: the body loads, a head of other classes and a new head start fresh
    report = load_pretrained(build("resnet9", meta(heads={"digit": 3, "parity": 2})), ckpt, required="body.")
    assert len(report.matched) == total - 4 and all(key.startswith("body.") for key in report.matched)
    assert report.missing == ["heads.parity.weight", "heads.parity.bias"]
    assert report.unexpected == ["heads.odd.weight", "heads.odd.bias"]
    assert report.mismatched == ["heads.digit.weight (10, 32) vs (3, 32)", "heads.digit.bias (10,) vs (3,)"]
    assert f"loaded {total - 4} of {total} tensors" in str(report)
    assert "2 missing, 2 unexpected, 2 of other shapes; missing (left as initialised): ['heads.parity.weight'" in str(report)


def test_pretrained_refuses_a_missing_file_an_unreadable_one_and_another_models_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match=r"at model.vit: model 'vit': pretrained: no checkpoint at nowhere.ckpt "
                                          r"\(e.g. runs/<name>/checkpoints/best.ckpt\)"):
        resolve_run({"vit": {"pretrained": "nowhere.ckpt"}})
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ValueError, match=f"pretrained: {garbage} is not a readable checkpoint"):
        build("vit", meta(), pretrained=str(garbage))
    empty = tmp_path / "empty.ckpt"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(ValueError, match=f"pretrained: {empty} holds no weights"):
        build("vit", meta(), pretrained=str(empty))
    resnet18 = save_checkpoint(tmp_path / "resnet.ckpt", build("resnet18", meta()))
    with pytest.raises(ValueError, match=f"pretrained checkpoint {resnet18} holds none of this model's tensors .*"
                                         "pass a checkpoint of a run of the same model"):
        build("convnext", meta(), pretrained=resnet18)  # the heads' bias (10,) alone does not make it a match


CONFIG_VIT = yaml.safe_load((ROOT / "configs" / "vit.yaml").read_text())["model"]["vit"]


def test_a_zoo_model_trains_from_the_cli_and_its_checkpoint_loads_whole(tmp_path, caplog):
    small = {"dim": 16, "depth": 1, "num_heads": 2}
    sets = {"output_dir": tmp_path, **{f"model.vit.{key}": value for key, value in small.items()},
            "trainer.max_epochs": 1, "trainer.limit_train_batches": 3, "trainer.limit_val_batches": 1,
            "trainer.limit_test_batches": 1, "trainer.num_sanity_val_steps": 0, "trainer.enable_progress_bar": "false"}
    done = run_main("core-train", "--config", "configs/vit.yaml", *(a for k, v in sets.items() for a in ("--set", f"{k}={v}")))
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"test/digit_acc = [0-9.]+", done.stdout)
    ckpt = str(tmp_path / "vit" / "checkpoints" / "best.ckpt")
    with caplog.at_level(logging.INFO, logger="core"):
        build("vit", meta(), **{**CONFIG_VIT, **small}, pretrained=ckpt)
    assert re.search(rf"pretrained: loaded (\d+) of \1 tensors from {ckpt}: \1 matched, 0 missing, 0 unexpected",
                     caplog.text)

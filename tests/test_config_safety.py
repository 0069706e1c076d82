"""Configs that used to hang, escape ``output_dir`` or end in a traceback (issue 13, items 8
and 9): each is one ``error: ...`` message, exit 2, and comes back at once."""

from __future__ import annotations

import errno
import os
import signal
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from core import ConfigError
from core.cli.train import main as core_train
from core.config import MAX_YAML_DEPTH, load_config, load_yaml, parse_config
from core.errors import short_repr
from core.paths import check_output_dir
from core.resolve import check_accelerator, check_trainer
from tests.conftest import SMALL_RUN

MINIMAL = {"name": "r", "data": {"format": "digits"}, "model": "simple_cnn"}

# "billion laughs": 9 ** 9 (387 million) strings once the aliases are expanded
BOMB = "\n".join(
    ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
)


@pytest.fixture(autouse=True)
def no_hang():
    """A test that hangs fails after 60 s instead of stalling the suite."""
    def stop(*_):
        raise TimeoutError("hung")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def fails(capsys, argv, *expected):
    code = core_train([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: "), err
    for text in expected:
        assert text in err, err
    return err


# ---- item 8: alias bombs, message sizes, duplicate keys, name ----------------------------------------------


@pytest.mark.parametrize("flags", [["--dry-run"], ["--print-config"], ["--set", "trainer.max_epochs=1", "--dry-run"]])
def test_alias_bomb_is_refused_at_once(capsys, write_config, flags):
    bombs = textwrap.indent(f"bombs:\n{textwrap.indent(BOMB, '  ')}\n", "    ")
    path = write_config(bombs + SMALL_RUN.replace("seed: 3", "seed: *i"))
    start = time.monotonic()
    err = fails(capsys, ["--config", path, *flags], "config error at bombs.", "run.yaml line",
                "more than 100,000 values once its aliases (*name) are expanded", "fix: write the values out")
    assert time.monotonic() - start < 5
    assert len(err) < 1000


def test_alias_bomb_in_a_set_value(capsys, write_config):
    value = "{" + ", ".join(line.replace(": &", ": &", 1) for line in BOMB.splitlines()) + "}"
    fails(capsys, ["--config", write_config(SMALL_RUN), "--set", f"trainer.plugins={value}", "--dry-run"],
          "config error at f: --set trainer.plugins line 1: this value stands for more than 100,000 values")


def test_recursive_alias(capsys, write_config):
    fails(capsys, ["--config", write_config(SMALL_RUN + "    loss_weights: &w {digit: *w}\n"), "--dry-run"],
          "config error at loss_weights.digit: ", "an alias (*name) refers to a value that contains it")


def test_aliases_used_normally_still_work(write_config):
    config = load_config(write_config("""
        data: {format: digits}
        model: simple_cnn
        optim: &o {optimizer: sgd, lr: 0.2}
        experiment: {parameter: pixelnorm.mean, values: [*o]}
    """))
    assert config.optim.optimizer == "sgd" and config.model_extra["experiment"]["values"] == [{"optimizer": "sgd", "lr": 0.2}]
    assert load_yaml("a: &a {x: 1, y: 2}\nb: {<<: *a, y: 3}\n", "t") == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}


def test_huge_values_are_cut_in_messages():
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "seed": "x" * 1_000_000})
    assert "config error at seed: 'xxx" in str(err.value) and len(str(err.value)) < 600
    shared = ["lol"] * 9
    for _ in range(9):
        shared = [shared] * 9  # 387 million strings: repr() would not finish
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "seed": shared})
    assert time.monotonic() - start < 5 and len(str(err.value)) < 600
    assert short_repr({"pixelnorm": {}, "invert": {}}) == "{'pixelnorm': {}, 'invert': {}}"


def test_integers_past_pythons_limit(capsys, write_config):
    fails(capsys, ["--config", write_config(SMALL_RUN.replace("seed: 3", "seed: " + "9" * 5000)), "--dry-run"],
          "run.yaml line 4, column 7: an integer of 5,000 digits, more than Python reads")
    fails(capsys, ["--config", write_config(SMALL_RUN), "--set", "seed=0x" + "f" * 4000, "--dry-run"],
          "config error at seed: <an integer of 16,000 bits> is not valid")


def test_huge_option_value_is_cut(capsys, write_config):
    err = fails(capsys, ["--config", write_config(SMALL_RUN), "--set", f"data.format.digits.channels=[{'1, ' * 2_000}1]",
                         "--dry-run"], "config error at data.format.digits.channels: [1, 1, 1")
    assert len(err) < 1000


def test_duplicate_key_names_both_lines(capsys, write_config):
    path = write_config("""\
        name: r
        data:
          format: digits
          batch_size: 32
          sampler: random
          batch_size: 64
        model: simple_cnn
    """)
    fails(capsys, ["--config", path, "--dry-run"],
          "error: config error at data.batch_size: key 'batch_size' appears twice (lines 4 and 6)",
          "fix: keep one of the two in", "run.yaml")
    fails(capsys, ["--config", write_config("model: a\ndata: {format: digits}\nmodel: b\n"), "--print-config"],
          "config error at model: key 'model' appears twice (lines 1 and 3)")


def test_duplicate_key_in_a_set_value(capsys, write_config):
    fails(capsys, ["--config", write_config(SMALL_RUN), "--set", "optim={lr: 0.1, lr: 0.2}", "--dry-run"],
          "config error at lr: key 'lr' appears twice (line 1, columns 2 and 11)", "--set optim")


@pytest.mark.parametrize("name, expected", [
    ("../escaped", "'../escaped' holds a path separator ('/')"),
    ("a/b", "'a/b' holds a path separator ('/')"),
    ("/tmp/x", "'/tmp/x' holds a path separator ('/')"),
    ("a\\b", "'a\\b' holds a path separator ('\\')"),
    ("..", "'..' would put the run directory (output_dir/name) outside output_dir"),
    (".", "'.' would make output_dir itself the run directory"),
    ("''", "is empty: output_dir itself would be the run directory"),
])
def test_name_must_stay_inside_output_dir(capsys, write_config, name, expected):
    fails(capsys, ["--config", write_config(SMALL_RUN), "--set", f"name={name}", "--dry-run"],
          f"config error at name: {expected}", "fix: use a plain name such as 'quickstart'")


def test_plain_names_are_accepted():
    for name in ("quickstart", "lr-1e-3.run_2", "..x", "a..b"):
        assert parse_config({**MINIMAL, "name": name}).name == name


# ---- item 9: the file, nesting, seed, trainer, output_dir ----------------------------------------------------


def test_config_not_utf8(capsys, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: r\ndata: {format: digits}\nmodel: caf\xe9\n".encode("latin-1"))
    fails(capsys, ["--config", path, "--dry-run"],
          f"config error: {path} line 3: the file is not UTF-8 text (byte 0xe9 at offset 41)", "fix: save it as UTF-8")


def test_utf8_with_bom_is_read(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffdata: {format: digits}\nmodel: simple_cnn\n".encode())
    assert load_config(path).model == "simple_cnn"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_config_unreadable(capsys, write_config):
    path = write_config(SMALL_RUN)
    path.chmod(0)
    try:
        fails(capsys, ["--config", path, "--dry-run"], f"cannot read config file '{path}': Permission denied")
    finally:
        path.chmod(0o644)


def test_config_read_error(capsys, write_config, monkeypatch):
    path = write_config(SMALL_RUN)

    def denied(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    fails(capsys, ["--config", path, "--dry-run"], f"cannot read config file '{path}': Permission denied",
          "fix: check the file's permissions")


def test_config_is_a_folder(capsys, tmp_path):
    fails(capsys, ["--config", tmp_path, "--dry-run"], f"config file '{tmp_path}' is a folder")


@pytest.mark.parametrize("text, where", [
    ("model: " + "[" * 5000 + "]" * 5000, "line 1, column 107"),
    ("".join(f"{'  ' * i}k{i}:\n" for i in range(3000)) + "  " * 3000 + "x: 1\n", "line 100, column 199"),
])
def test_config_nested_thousands_deep(capsys, write_config, text, where):
    fails(capsys, ["--config", write_config(text), "--print-config"],
          f"config error: {write_config(text)} {where}: the YAML nests deeper than {MAX_YAML_DEPTH} levels",
          "fix: a run config nests a few levels")


def test_nesting_deep_through_aliases(capsys, write_config):
    levels = "\n".join(f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]" for i in range(1, 20))
    fails(capsys, ["--config", write_config(SMALL_RUN + textwrap.indent(f"x:\n  a0: &a0 1\n{textwrap.indent(levels, '  ')}\n", "    ")),
                   "--dry-run"], "this value nests deeper than 100 levels once its aliases (*name) are expanded")


def test_set_nested_thousands_deep(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", path, "--set", "model=" + "[" * 5000 + "]" * 5000, "--dry-run"],
          "config error: --set model line 1", "nests deeper than 100 levels")
    fails(capsys, ["--config", path, "--set", "trainer." + ".".join(["k"] * 5000) + "=1", "--dry-run"],
          "config error: --set: the key has 5001 levels, more than 100")


@pytest.mark.parametrize("seed, expected", [
    (-1, "config error at seed: -1 is not valid: Input should be greater than or equal to 0"),
    (2**32, "config error at seed: 4294967296 is not valid: Input should be less than or equal to 4294967295"),
])
def test_seed_out_of_range(capsys, write_config, seed, expected):
    fails(capsys, ["--config", write_config(SMALL_RUN), "--set", f"seed={seed}", "--dry-run"], expected,
          "fix: use a seed from 0 to 4294967295")


def test_a_name_yaml_reads_as_a_number_says_to_quote_it():
    with pytest.raises(ConfigError, match="config error at name: 123 is not valid: Input should be a valid string\n"
                                          "  fix: write it in quotes to keep it as text: name: '123'"):
        parse_config({**MINIMAL, "name": 123})


def test_seed_bounds_are_accepted():
    assert parse_config({**MINIMAL, "seed": 2**32 - 1}).seed == 2**32 - 1
    assert parse_config({**MINIMAL, "seed": 0}).seed == 0


@pytest.fixture
def no_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("name", ["gpu", "cuda"])
def test_gpu_accelerator_without_a_gpu(capsys, write_config, no_gpu, name):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", path, "--set", f"trainer.accelerator={name}"],
          f"config error at trainer.accelerator: '{name}' asks for a GPU, but there is none here: "
          "torch.cuda.is_available() is False", "fix: set trainer.accelerator: cpu, or auto")
    assert not (path.parent / "runs").exists()  # stopped before the run directory was made
    # --dry-run checks configs on machines without the GPU they will train on: a warning
    assert core_train(["--config", str(path), "--set", f"trainer.accelerator={name}", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "WARNING: config error at trainer.accelerator" in out.err and "a run on this machine stops" in out.err


def test_accelerator_checks(no_gpu):
    with pytest.raises(ConfigError, match="'mps' asks for an Apple GPU"):
        check_accelerator({"accelerator": "mps"})
    with pytest.raises(ConfigError, match="config error at trainer.devices: -1 names GPUs, but there is none here"):
        check_accelerator({"devices": -1})
    check_accelerator({"accelerator": "cpu", "devices": 2})
    check_accelerator({})
    with pytest.raises(ConfigError, match=r"'GPU' is not an accelerator \(did you mean 'gpu'\?\)"):
        check_trainer({"accelerator": "GPU"})


@pytest.mark.parametrize("devices, expected", [
    (0, "0 asks for no device: a run trains on at least one"),
    ("0", "'0' asks for no device"),
    ([], "[] asks for no device"),
    (False, "False asks for no device"),
    (-2, "-2 is not a device count or a list of device indices"),
    ("many", "'many' is not a number of devices"),
])
def test_devices_refused(devices, expected):
    with pytest.raises(ConfigError) as err:
        check_trainer({"devices": devices})
    assert str(err.value).startswith(f"config error at trainer.devices: {expected}")
    assert "fix: set trainer.devices to a number of devices" in str(err.value)


def test_devices_accepted():
    for devices in (1, 2, "2", "auto", -1, [0, 1], "0,"):
        check_trainer({"devices": devices})
    with pytest.raises(ConfigError, match="names GPUs, but trainer.accelerator is cpu"):
        check_trainer({"accelerator": "cpu", "devices": -1})


def test_devices_zero_from_the_command_line(capsys, write_config):
    fails(capsys, ["--config", write_config(SMALL_RUN), "--set", "trainer.devices=0", "--dry-run"],
          "config error at trainer.devices: 0 asks for no device")


def test_output_dir_is_a_file(capsys, write_config, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    fails(capsys, ["--config", write_config(SMALL_RUN)],
          f"config error at output_dir: '{tmp_path / 'runs'}' is a file, not a folder, so the run directory "
          f"{tmp_path / 'runs' / 'small'} cannot be made under it", "fix: set output_dir to a folder you can write")


def test_output_dir_under_a_file_and_run_dir_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=f"at output_dir: '{tmp_path / 'file'}' is a file"):
        check_output_dir(parse_config({**MINIMAL, "output_dir": str(tmp_path / "file" / "deeper")}))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r").write_text("")
    with pytest.raises(ConfigError, match=f"at name: the run directory {tmp_path / 'runs' / 'r'} is a file"):
        check_output_dir(parse_config({**MINIMAL, "output_dir": str(tmp_path / "runs")}))
    assert check_output_dir(parse_config({**MINIMAL, "output_dir": str(tmp_path / "new" / "runs")})) == \
        tmp_path / "new" / "runs" / "r"
    assert not (tmp_path / "new").exists()  # the check creates nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a folder whatever its mode")
def test_output_dir_read_only(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(ConfigError, match="cannot write in .*ro.*: permission denied"):
        check_output_dir(parse_config({**MINIMAL, "output_dir": str(tmp_path / "ro")}))


def test_output_dir_on_a_read_only_filesystem(capsys, write_config, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", path], "config error at output_dir: cannot write in", "Read-only file system",
          "fix: set output_dir to a folder you can write")


@pytest.mark.parametrize(("options", "message"), [
    ({"log_every_n_steps": 0}, "trainer.log_every_n_steps: log_every_n_steps must be at least 1, not 0"),
    ({"accumulate_grad_batches": 0}, "trainer.accumulate_grad_batches: accumulate_grad_batches must be at least 1"),
    ({"max_steps": -5}, "trainer.max_steps: max_steps must be at least -1, not -5"),
    ({"max_time": "abc"}, "trainer.max_time: 'abc' is not a duration"),
])
def test_trainer_values_lightning_refuses_only_while_training_are_refused_when_resolved(options, message):
    """Each passed the signature's types, then stopped the run with a traceback (a division by
    zero, or Lightning's refusal) after the run directory was prepared."""
    with pytest.raises(ConfigError, match=message):
        check_trainer(options)
    assert check_trainer({"max_time": "00:01:00:00", "max_steps": -1, "log_every_n_steps": 1})

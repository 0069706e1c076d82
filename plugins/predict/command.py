"""``core-train predict --config run.yaml [--split S] [--record NAME,...] [--output FILE]``.

Imports nothing heavy: ``core-train`` builds every command when it starts; the writer
(:mod:`plugins.predict.writer`, torch and h5py) loads only when predictions are made.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.kinds import Command

if TYPE_CHECKING:
    from core.config import RunConfig
    from core.registry import Registry


class Predict(Command):
    """Writes every sample's outputs on ``--split`` (default test), from the checkpoint
    ``--checkpoint`` names, to HDF5 (``--output``, default ``<run>/predictions/<split>.h5``):
    each head's logits, predicted class and label, predicted responses, and the outputs of
    the model's modules ``--record`` names."""

    help = "write a checkpoint's per-sample outputs (and --record activations) to HDF5"
    takes_checkpoint = True

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--split", choices=("train", "val", "test"), help="the split (default test)")
        group.add_argument("--record", default="", metavar="NAME,...", help="also write these modules' activations")
        group.add_argument("--output", metavar="FILE", help="the HDF5 file (default <run>/predictions/<split>.h5)")

    def check(self, args: argparse.Namespace, chosen: bool) -> None:
        if (args.record or args.output or args.split) and not chosen:
            raise ConfigError("", "--split, --record and --output go with core-train predict",
                              fix="core-train predict --config ... --split val --record NAME")
        if chosen and args.output and Path(args.output).is_dir():
            raise ConfigError("--output", f"{args.output} is a folder; --output names the HDF5 file to write",
                              fix=f"e.g. --output {Path(args.output) / 'predictions.h5'}")

    def run(self, args: argparse.Namespace, config: RunConfig, registry: Registry) -> int:
        from core.cli.train import prepare

        resolved = prepare(args, config, registry)
        if resolved is None:  # --print-config, --dry-run: torch and h5py stay unloaded for --print-config
            return 0
        from core.run import run_dir_of
        from plugins.predict.writer import predict

        record = [name.strip() for name in args.record.split(",") if name.strip()]
        path = predict(resolved, run_dir_of(config), args.checkpoint, args.split or "test", record,
                       Path(args.output) if args.output else None)
        print(f"predictions: {path}")
        return 0

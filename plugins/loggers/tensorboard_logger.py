"""Logger ``tensorboard``: Lightning's TensorBoardLogger writing event files into ``<run_dir>/tensorboard``."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

from core import PluginUnavailable

if find_spec("tensorboard") is None and find_spec("tensorboardX") is None:
    raise PluginUnavailable("neither tensorboard nor tensorboardX is installed; install it with: "
                            "pip install 'core-train[tensorboard]'")


def tensorboard(run_dir: Path) -> Any:
    """Event files (scalars and the run's hyperparameters) in ``<run_dir>/tensorboard``; a
    resumed run adds a new event file to the same folder. View with ``tensorboard --logdir``."""
    from lightning.pytorch.loggers import TensorBoardLogger

    class RunTensorBoardLogger(TensorBoardLogger):
        """Writes into the folder it is given. Lightning's expands ``$VAR`` and ``~`` in it: a
        run named ``$HOME`` (or an output_dir holding a ``$``) logged elsewhere."""

        @property
        def log_dir(self) -> str:
            return self.root_dir

    return RunTensorBoardLogger(Path(run_dir) / "tensorboard", name="", version="", default_hp_metric=False)

"""``compile:``: ``torch.compile`` of the run's model, checked before any data is loaded.

The model's ``forward`` is compiled in place (``nn.Module.compile``): parameter names,
checkpoints and ``pretrained`` loading stay exactly as without it. The first steps are
slower (the graph is traced and compiled), later ones faster on a GPU. Under
``bf16-mixed`` the autocast region is traced with the model.
"""

from __future__ import annotations

import shutil
from typing import Any

from core.config import CompileSection
from core.errors import ConfigError, choices_text, did_you_mean


def check_compile(section: CompileSection | None, trainer: dict[str, Any]) -> None:
    """Refuse, with the reason and the fix, a ``compile`` section that cannot work here."""
    if section is None:
        return
    import torch

    if not torch._dynamo.is_dynamo_supported():
        raise ConfigError("compile", "torch.compile is not supported by this Python and torch build",
                          fix="remove the compile section (the run then trains eagerly)")
    backends = torch._dynamo.list_backends(exclude_tags=())
    if section.backend not in backends:
        raise ConfigError("compile.backend", f"no torch.compile backend '{section.backend}'"
                          f"{did_you_mean(section.backend, backends)}", fix=f"use one of: {choices_text(backends)}")
    on_gpu = str(trainer.get("accelerator", "auto")) in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if section.mode == "reduce-overhead" and not on_gpu:
        raise ConfigError("compile.mode", "'reduce-overhead' replays CUDA graphs, and this run has no CUDA accelerator",
                          fix="use compile.mode: default on the CPU")
    if section.backend == "inductor" and not on_gpu and not any(map(shutil.which, ("g++", "c++", "clang++"))):
        raise ConfigError("compile.backend", "the inductor backend compiles C++ for the CPU, and no C++ compiler "
                          "is on PATH", fix="install one (Debian: apt-get install g++) or use compile.backend: aot_eager")


def apply_compile(model: Any, section: CompileSection | None) -> Any:
    """Compile ``model``'s forward in place when the run asks for it; return the model."""
    if section is not None:
        model.compile(mode=section.mode, backend=section.backend, fullgraph=section.fullgraph, dynamic=section.dynamic)
    return model

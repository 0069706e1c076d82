"""A shared core with one readout per session: the standard model of multi-session neural data.

The core (convolutions, and with ``recurrent`` a convolutional GRU over time steps) turns a
frame into feature maps every session shares. Each session's readout is factorised per
neuron: a spatial mask over the core's map and a weight per feature channel, plus a bias;
``elu + 1`` makes the predicted rates positive (what the Poisson loss needs). Time-resolved
stimuli (T, C, H, W) give responses (T, neurons), one prediction per frame.

``pretrained: PATH`` loads the core's weights (only those) from a run's checkpoint; tensors
that do not match by name or shape are reported and left as initialised.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from core import Batch, DatasetMeta
from plugins.zoo.pretrained import load_pretrained


class ConvGRU(nn.Module):
    """A GRU whose gates are convolutions over the feature map: recurrence per pixel and its neighbours."""

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 2 * channels, kernel, padding=kernel // 2)
        self.candidate = nn.Conv2d(2 * channels, channels, kernel, padding=kernel // 2)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> the hidden state at every step, same shape."""
        state = torch.zeros_like(frames[:, 0])
        states = []
        for step in range(frames.shape[1]):
            x = frames[:, step]
            update, reset = torch.sigmoid(self.gates(torch.cat([x, state], 1))).chunk(2, 1)
            fresh = torch.tanh(self.candidate(torch.cat([x, reset * state], 1)))
            state = (1 - update) * state + update * fresh
            states.append(state)
        return torch.stack(states, 1)


class FactorisedReadout(nn.Module):
    """Per neuron: a spatial mask (H x W) and feature weights (C); rates = elu(<mask, features . w> + b) + 1."""

    def __init__(self, channels: int, height: int, width: int, neurons: int) -> None:
        super().__init__()
        self.mask = nn.Parameter(torch.randn(neurons, height * width) * 0.01)
        self.features = nn.Parameter(torch.randn(neurons, channels) / channels**0.5)
        self.bias = nn.Parameter(torch.zeros(neurons))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) feature maps -> (N, neurons) rates."""
        spatial = torch.einsum("ncp,kp->nkc", maps.flatten(2), self.mask)  # each neuron's mask over each channel
        drive = (spatial * self.features).sum(-1) + self.bias
        return F.elu(drive) + 1


class SharedCoreReadout(nn.Module):
    """A convolutional core shared by every dataset and a factorised readout per dataset that
    predicts its neurons' ``responses``.

    ``channels``: the feature channels of every core layer and of the maps the readouts read
    (>= 1).
    ``layers``: the core's convolutional layers (convolution, BatchNorm, ELU; >= 1).
    ``kernel``: the side of the core's square convolution kernels, odd so the maps keep the
    stimulus's height and width.
    ``recurrent``: add a convolutional GRU over the time steps after the core (needs stimuli
    over time, (T, C, H, W)).
    ``loss``: ``poisson`` (the negative log-likelihood of the responses under the predicted
    rates) or ``mse`` (mean squared error).
    ``pretrained``: a core-train checkpoint whose core (and recurrence) weights are loaded;
    the readouts start fresh (see docs/plugins/zoo.md)."""

    predicts_responses = True

    def __init__(
        self,
        meta: DatasetMeta,
        datasets: dict[str, DatasetMeta],
        channels: int = 32,
        layers: int = 2,
        kernel: int = 5,
        recurrent: bool = False,
        loss: Literal["poisson", "mse"] = "poisson",
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if min(channels, layers, kernel) < 1 or kernel % 2 == 0:
            raise ValueError(f"channels and layers must be at least 1 and kernel odd (the maps keep their size), "
                             f"not kernel {kernel}")
        dotted = [name for name in datasets if "." in name]
        if dotted:
            raise ValueError(f"dataset names {dotted} contain '.', which a readout's parameter name cannot hold; "
                             "rename them (e.g. m1_s0)")
        shapes = {name: (m.stim_shape, m.stim_axes) for name, m in datasets.items()}
        if len(set(shapes.values())) > 1:
            raise ValueError(f"the shared core takes one stimulus shape; the datasets give {shapes}")
        for name, m in datasets.items():
            if "responses" not in m.fields:
                raise ValueError(f"dataset '{name}' has no responses to predict (its fields: {list(m.fields) or 'none'})")
        self.loss, self.time = loss, meta.stim_axes.startswith("T")
        for name, m in datasets.items():  # over time, a rate per time step and neuron: (T, neurons) responses
            shape = tuple(m.fields["responses"][0])
            if self.time and (len(shape) < 2 or shape[0] != meta.stim_shape[0]):
                raise ValueError(f"the stimulus is over time ({meta.stim_axes} {tuple(meta.stim_shape)} after "
                                 f"data.transforms), so the model predicts (T, neurons), but dataset '{name}' has "
                                 f"responses {shape}: one per trial; remove the transform that adds the time axis "
                                 "(a stimulus timing one), or use sessions recorded over time")
        if recurrent and not self.time:
            raise ValueError(f"recurrent needs stimuli over time (T, C, H, W); the data is {meta.stim_axes} {meta.stim_shape}")
        in_channels, height, width = meta.stim_shape[-3:]
        blocks: list[nn.Module] = []
        for layer in range(layers):
            blocks += [nn.Conv2d(in_channels if layer == 0 else channels, channels, kernel, padding=kernel // 2),
                       nn.BatchNorm2d(channels), nn.ELU()]
        self.core = nn.Sequential(*blocks)
        self.recurrence = ConvGRU(channels) if recurrent else None
        self.readouts = nn.ModuleDict({
            name: FactorisedReadout(channels, height, width, m.fields["responses"][0][-1]) for name, m in datasets.items()
        })
        if pretrained:  # the core's weights (and the recurrence's); the readouts start fresh
            load_pretrained(self, pretrained, prefixes=("core.", "recurrence."), required="core.", what="core tensors")

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        stim = batch["stim"]
        if not self.time:
            return {"responses": self.readouts[batch["dataset"]](self.core(stim))}
        b, t = stim.shape[:2]
        maps = self.core(stim.reshape(b * t, *stim.shape[2:]))
        if self.recurrence is not None:
            maps = self.recurrence(maps.view(b, t, *maps.shape[1:])).flatten(0, 1)
        return {"responses": self.readouts[batch["dataset"]](maps).view(b, t, -1)}

"""A recurrent CNN for presentations over time (B, T, C, H, W).

Each step's image goes through a small convolutional encoder (shared over time); a GRU,
LSTM or plain RNN carries state across steps; one linear readout per head reads every
step, giving logits (B, T, classes). ``loss_on`` tells the training module which steps the
loss sees: ``stimulus`` (steps where ``stim_on``), ``all``, or ``last``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from core import Batch, DatasetMeta

RECURRENCE = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


class RecurrentCNN(nn.Module):
    """A convolutional encoder per time step, a recurrent layer over the steps and one linear
    readout per head at every step; takes presentations over time (T, C, H, W).

    ``conv1``: the output channels of the encoder's first 3x3 convolution (>= 1).
    ``conv2``: the output channels of the encoder's second 3x3 convolution, average-pooled to 2x2 for
    the recurrent layer (>= 1).
    ``hidden_size``: the width of the recurrent state the readouts read (>= 1).
    ``recurrence``: the recurrent layer, ``gru``, ``lstm`` or ``rnn`` (a plain tanh RNN).
    ``num_layers``: recurrent layers stacked on each other (>= 1).
    ``loss_on``: the steps the loss sees, ``stimulus`` (those where ``stim_on``), ``all`` or
    only the ``last``."""

    def __init__(
        self,
        meta: DatasetMeta,
        conv1: int = 16,
        conv2: int = 32,
        hidden_size: int = 64,
        recurrence: Literal["gru", "lstm", "rnn"] = "gru",
        num_layers: int = 1,
        loss_on: Literal["stimulus", "all", "last"] = "stimulus",
    ) -> None:
        super().__init__()
        if meta.stim_axes[:1] != "T" or len(meta.stim_shape) != 4:
            raise ValueError(
                f"recurrent_cnn takes presentations over time (T, C, H, W); dataset '{meta.name}' gives "
                f"{meta.stim_axes} {meta.stim_shape} (add a timing transform such as repeat or stimulus_duration)"
            )
        if min(conv1, conv2, hidden_size, num_layers) < 1:
            raise ValueError("conv1, conv2, hidden_size and num_layers must be at least 1")
        self.loss_on = loss_on
        channels = meta.stim_shape[1]
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, conv1, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(conv1, conv2, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.recurrent = RECURRENCE[recurrence](conv2 * 4, hidden_size, num_layers=num_layers, batch_first=True)
        self.heads = nn.ModuleDict({head: nn.Linear(hidden_size, n) for head, n in meta.heads.items()})

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        stim = batch["stim"]
        b, t = stim.shape[:2]
        features = self.encoder(stim.reshape(b * t, *stim.shape[2:])).view(b, t, -1)
        states, _ = self.recurrent(features)
        return {head: layer(states) for head, layer in self.heads.items()}

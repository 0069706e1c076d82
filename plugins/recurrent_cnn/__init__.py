"""Model ``recurrent_cnn``: a convolutional encoder per time step, recurrence over time,
a readout at every step."""

from core import hookimpl


@hookimpl
def core_models() -> dict[str, str]:
    return {"recurrent_cnn": "plugins.recurrent_cnn.model:RecurrentCNN"}

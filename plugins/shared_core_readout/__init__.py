"""Model ``shared_core_readout``: one convolutional core shared by every dataset (session),
one readout per dataset predicting its neurons' responses."""

from core import hookimpl


@hookimpl
def core_models() -> dict[str, str]:
    return {"shared_core_readout": "plugins.shared_core_readout.model:SharedCoreReadout"}

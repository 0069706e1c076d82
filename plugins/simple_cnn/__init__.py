"""Model ``simple_cnn``: two conv blocks, a hidden layer, one linear head per dataset head."""

from core import hookimpl


@hookimpl
def core_models() -> dict[str, str]:
    return {"simple_cnn": "plugins.simple_cnn.model:SimpleCNN"}

"""Transform ``normalize``: per-channel ``(x / scale - mean) / std`` on the device, given or learned."""

from core import hookimpl


@hookimpl
def core_transforms() -> dict[str, str]:
    return {"normalize": "plugins.normalize.transform:Normalize"}

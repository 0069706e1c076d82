"""Transform ``pixelnorm``: ``(x - 127) / 255``, at preparation or on the device."""

from core import hookimpl


@hookimpl
def core_transforms() -> dict[str, str]:
    return {"pixelnorm": "plugins.pixelnorm.transform:PixelNorm"}

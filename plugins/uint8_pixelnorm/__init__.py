"""Storage ``uint8``: raw pixels stay uint8 in RAM (1 byte per value) and cross to the device
as uint8; pixelnorm and every other transform run per batch on the device."""

from core import hookimpl


@hookimpl
def core_storage_backends() -> dict[str, str]:
    return {"uint8": "plugins.uint8_pixelnorm.storage:Uint8Storage"}

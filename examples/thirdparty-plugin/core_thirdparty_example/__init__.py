"""Registration module: names the factory as a string, so listing plugins imports no torch."""

from core import hookimpl


@hookimpl
def core_transforms() -> dict[str, str]:
    return {"invert": "core_thirdparty_example.invert:Invert"}

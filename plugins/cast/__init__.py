"""Storage ``float32``: transforms run once at preparation, samples held as float32."""

from core import hookimpl


@hookimpl
def core_storage_backends() -> dict[str, str]:
    return {"float32": "plugins.cast.storage:Float32Storage"}

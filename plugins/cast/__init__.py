"""Storage ``bfloat16`` and ``float32``: transforms run once at preparation (in chunks) and
samples are held in that dtype; ``bfloat16`` halves the RAM of ``float32``."""

from core import hookimpl


@hookimpl
def core_storage_backends() -> dict[str, str]:
    return {"bfloat16": "plugins.cast.storage:BFloat16Storage", "float32": "plugins.cast.storage:Float32Storage"}

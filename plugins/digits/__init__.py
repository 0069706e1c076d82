"""Format ``digits``: the real 8x8 handwritten digits bundled with scikit-learn."""

from core import hookimpl


@hookimpl
def core_data_formats() -> dict[str, str]:
    return {"digits": "plugins.digits.format:Digits"}

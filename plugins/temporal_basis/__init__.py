"""Transform ``temporal_basis``: each pixel's time course filtered by raised-cosine bumps."""

from core import hookimpl


@hookimpl
def core_transforms() -> dict[str, str]:
    return {"temporal_basis": "plugins.temporal_basis.transform:TemporalBasis"}

"""Format and dataset tool ``hdf5``: recording sessions, one HDF5 file each (docs/formats/sessions.md)."""

from core import hookimpl


@hookimpl
def core_data_formats() -> dict[str, str]:
    return {"hdf5": "plugins.hdf5.format:HDF5Sessions"}


@hookimpl
def core_data_tools() -> dict[str, str]:
    return {"hdf5": "plugins.hdf5.tool:HDF5Tool"}

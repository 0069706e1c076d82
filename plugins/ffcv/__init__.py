"""Format and dataset tool ``ffcv``: .beton files read through FFCV's compiled ``Loader``.

FFCV is an optional extra; this module imports nothing from it, so listing plugins stays
fast, and reports the plugin unavailable (with the install command) when it is missing.
"""

from importlib.util import find_spec

from core import PluginUnavailable, hookimpl

INSTALL = (
    "install it with: apt-get install pkg-config libopencv-dev libturbojpeg0-dev && "
    "pip install numpy torch setuptools wheel pillow && pip install --no-build-isolation 'core-train[ffcv]'"
)

if find_spec("ffcv") is None:
    raise PluginUnavailable(f"FFCV is not installed; {INSTALL}", provides=["ffcv"])


@hookimpl
def core_data_formats() -> dict[str, str]:
    return {"ffcv": "plugins.ffcv.format:FFCVFormat"}


@hookimpl
def core_data_tools() -> dict[str, str]:
    return {"ffcv": "plugins.ffcv.tool:FFCVTool"}

"""Format and dataset tool ``webdataset``: samples streamed from tar shards (WebDataset layout).

The webdataset library is an optional extra; this module imports nothing from it (listing
plugins stays fast) and reports the plugin unavailable, with the install command, when it
is missing.
"""

from importlib.util import find_spec

from core import PluginUnavailable, hookimpl

if find_spec("webdataset") is None:
    raise PluginUnavailable("the webdataset library is not installed; install it with: pip install "
                            "'core-train[webdataset]'", provides=["webdataset"])


@hookimpl
def core_data_formats() -> dict[str, str]:
    return {"webdataset": "plugins.webdataset.format:WebDatasetFormat"}


@hookimpl
def core_data_tools() -> dict[str, str]:
    return {"webdataset": "plugins.webdataset.tool:WebDatasetTool"}

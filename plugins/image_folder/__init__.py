"""Format and dataset tool ``image_folder``: ``root/<class>/<image>`` folders (ImageNet's
layout), decoded once in parallel to uint8 at a chosen size and cached beside the data."""

from core import hookimpl


@hookimpl
def core_data_formats() -> dict[str, str]:
    return {"image_folder": "plugins.image_folder.format:ImageFolder"}


@hookimpl
def core_data_tools() -> dict[str, str]:
    return {"image_folder": "plugins.image_folder.tool:ImageFolderTool"}

"""Formats ``cifar10``, ``mnist`` and ``fashion_mnist`` (the standard datasets as their
publishers ship them, downloaded with ``download: true``) and the ``idx`` dataset tool."""

from core import hookimpl


@hookimpl
def core_data_formats() -> dict[str, str]:
    return {
        "cifar10": "plugins.standard_datasets.cifar10:Cifar10",
        "mnist": "plugins.standard_datasets.mnist:Mnist",
        "fashion_mnist": "plugins.standard_datasets.mnist:FashionMnist",
    }


@hookimpl
def core_data_tools() -> dict[str, str]:
    return {"idx": "plugins.standard_datasets.tool:IdxTool"}

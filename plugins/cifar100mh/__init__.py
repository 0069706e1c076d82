"""Format ``cifar100mh`` (CIFAR-100-MH: multi-head CIFAR-style binary files with a JSON
description), format ``cifar100`` (CIFAR-100's Python-version pickles as users have them
on disk, heads ``coarse`` and ``fine``) and the ``cifar100mh`` dataset tool for core-data."""

from core import hookimpl


@hookimpl
def core_data_formats() -> dict[str, str]:
    return {"cifar100mh": "plugins.cifar100mh.format:Cifar100MH", "cifar100": "plugins.cifar100mh.cifar100:Cifar100"}


@hookimpl
def core_data_tools() -> dict[str, str]:
    return {"cifar100mh": "plugins.cifar100mh.tool:Cifar100MHTool"}

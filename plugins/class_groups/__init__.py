"""Format wrapper ``class_groups``: the options ``classes``, ``group``, ``groups`` and
``label_map`` on every format with label heads (keep some classes, renumber them 0..k-1;
``label_map.json`` in the run directory)."""

from core import hookimpl


@hookimpl
def core_format_wrappers() -> dict[str, str]:
    return {"class_groups": "plugins.class_groups.subset:ClassSubset"}

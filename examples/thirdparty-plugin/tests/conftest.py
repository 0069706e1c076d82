"""The plugin under test, for core-train's fixtures (core_registry, run_config): they find it
whether or not it is installed."""

import pytest

import core_thirdparty_example


@pytest.fixture
def core_plugins():
    return [core_thirdparty_example]

"""Shared by every test folder (one folder per layer of the library, as docs/architecture.md draws them).

pytest puts this folder on sys.path (rootdir-relative imports, no __init__.py in the test folders), so the
helpers are one package for all: `from helpers.tiny_runner import make_runner`, `from helpers import
ros_harness as T`. Fixtures that more than one folder uses live here.
"""

import pytest


@pytest.fixture(scope='module')
def tiny():
    """(the `tiny` SeqPoseConfig, a model of it with seed-0 weights), built once per test module."""
    from helpers.tiny_runner import tiny_model

    return tiny_model()

"""The local Ray shared by the Ray tests of every test file (import ``local_ray`` from here).

Each test module that imports the fixture gets its own copy of it, but only the first one
to run starts Ray (``ray.is_initialized()``) and only that one shuts it down at the end
of the session, so a session starts Ray once however many files use it.
"""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole test session (starting one takes ~10 s)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    yield ray
    if started:
        ray.shutdown()

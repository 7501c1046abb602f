"""The local Ray shared by the Ray tests of every test file (import ``local_ray`` from here).

Each test module that imports the fixture gets its own copy of it, but only the first one
to run starts Ray (``ray.is_initialized()``) and only that one shuts it down at the end
of the session, so a session starts Ray once however many files use it.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def interrupted_after_first_chunk():
    """Within the block, Ray jobs hand back their first chunk of rows and then stop as Ctrl-C
    (or a lost cluster) would: what an interrupted run leaves for ``resume`` to carry on from."""
    import imgasdata.ray_engine as engine

    real = engine.map_paths

    def stops_after_first_chunk(*args, **kwargs):
        rows = real(*args, **kwargs)
        yield next(rows)
        rows.close()
        raise KeyboardInterrupt

    engine.map_paths = stops_after_first_chunk
    try:
        yield
    finally:
        engine.map_paths = real

"""Session-wide fixtures shared by every test package (helpers are in ``tests/support.py``).

NeMo takes seconds to import and a model about a second to load, so engines are session-scoped; tests that
need a private engine (chunk sizes, capacity) build their own from the session's tiny model.
"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_engine():
    import parakeet_stream as ps

    # two lanes, as on the project's 2-core machine, whatever this machine's core count (lanes=None would follow it)
    engine = ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=32, lanes=2))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def tiny_model():
    """A random-weight cache-aware hybrid model with all four look-aheads, joint sharpened to emit tokens."""
    from parakeet_stream.testing import build_random_model

    return build_random_model("tiny", seed=0)

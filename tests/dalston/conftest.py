"""Fixtures for the dalston worker tests: real redis-server processes, the shared demo-model engine, espeak
speech, and a worker bound to a free loopback port."""
from __future__ import annotations

from typing import Any, AsyncIterator, Iterator

import numpy as np
import pytest
import pytest_asyncio

from parakeet_services.dalston.server import DalstonWorker, WorkerOptions
from tests.dalston.kit import MODEL, RedisServer
from tests.support import speech as espeak_speech


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[Any]:
    client = redis_server.client()
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def engine() -> Any:
    import parakeet_stream as ps

    return ps.shared_engine(ps.EngineConfig(model=MODEL, device="cpu", max_streams=64))


@pytest.fixture(scope="session")
def speech() -> Any:
    """``speech(text)`` → 16 kHz float32: 0.25 s of silence, the sentence at espeak-ng's default 175 words per
    minute, then 0.5 s of silence."""

    def make(text: str) -> np.ndarray:
        return np.concatenate([np.zeros(4000, np.float32), espeak_speech(text, rate=175), np.zeros(8000, np.float32)])

    return make


@pytest_asyncio.fixture
async def worker_factory(engine: Any) -> AsyncIterator[Any]:
    started: list[DalstonWorker] = []

    async def make(**overrides: Any) -> DalstonWorker:
        options = WorkerOptions(host="127.0.0.1", port=0, instance="test-worker", **overrides)
        worker = DalstonWorker(engine, options)
        await worker.start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        await worker.close()


@pytest_asyncio.fixture
async def worker(worker_factory: Any) -> DalstonWorker:
    return await worker_factory(max_sessions=4)



from __future__ import annotations

import shutil

import pytest

from support import Microservice, RedisServer, export_phishing, require


@pytest.fixture
def phishing_folder(tmp_path):
    return export_phishing(tmp_path / "model")


@pytest.fixture
def redis_server(tmp_path_factory):
    require("redis-server", shutil.which("redis-server") is not None, "apt-get install redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def services():
    """Start microservices through this list; all are stopped at the end of the test."""
    started: list[Microservice] = []

    class Starter:
        def start(self, *args, **kwargs) -> Microservice:
            service = Microservice(*args, **kwargs)
            started.append(service)
            return service.start()

        def add(self, service: Microservice) -> Microservice:
            started.append(service)
            return service

    yield Starter()
    for service in started:
        service.stop()


@pytest.fixture
def runs():
    """Start runs through this list; each is stopped at the end of the test."""
    from local_run import Run

    started: list[Run] = []

    class Starter:
        def start(self, *args, headers=None, **kwargs) -> Run:
            run = Run(*args, **kwargs)
            started.append(run)
            return run.start(headers=headers)

    yield Starter()
    for run in started:
        run.stop()

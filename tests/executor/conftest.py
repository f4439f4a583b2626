from __future__ import annotations

import shutil

import pytest

from support import Microservice, RedisServer, require


@pytest.fixture(scope="module")
def module_services():
    """Microservices shared by the tests of one manifest; stopped at the end of the module."""
    started: list[Microservice] = []

    def start(*args, **kwargs) -> Microservice:
        service = Microservice(*args, **kwargs)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory):
    require("redis-server", shutil.which("redis-server") is not None, "apt-get install redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()

from __future__ import annotations

import shutil
import uuid

import pytest

from support import Microservice, RedisServer, export_phishing, require, start_kafka


@pytest.fixture
def phishing_folder(tmp_path):
    return export_phishing(tmp_path / "model")


@pytest.fixture
def redis_server(tmp_path_factory):
    require("redis-server", shutil.which("redis-server") is not None, "apt-get install redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """One real Kafka broker (KRaft) on 127.0.0.1 for the session; tests keep apart by topic prefix."""
    cluster = start_kafka(tmp_path_factory.mktemp("kafka"), nodes=1)
    yield cluster
    cluster.stop()


@pytest.fixture
def kafka_uri(kafka_broker):
    """A ``kafka://`` state URI on the session's broker whose topics no other test uses."""
    return kafka_broker.uri(f"t{uuid.uuid4().hex[:12]}.")


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

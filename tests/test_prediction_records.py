"""Prediction records keep to their capacity (the oldest go first) and their time to live, on every backend."""

from __future__ import annotations

import time

import pytest

from model_wrappers.log import _open_backend


@pytest.fixture(params=["sqlite", "redis", "kafka"])
def store_uri(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    if request.param == "kafka":
        return request.getfixturevalue("kafka_uri")
    return request.getfixturevalue("redis_server").url


def write(log, keys: list[str], batch: int) -> None:
    for start in range(0, len(keys), batch):
        for key in keys[start:start + batch]:
            log.remember(key, f'[{{"x": "{key}"}}]'.encode())
        log._writer.flush()


def test_records_beyond_the_capacity_go_oldest_first(store_uri):
    capacity = 100
    writer = _open_backend(store_uri, "records", ttl=600.0, capacity=capacity)
    keys = [f"puid-{i}" for i in range(1100)]
    # Batches of several sizes: each batch is one statement of a padded size.
    write(writer, keys[:37], 37)
    write(writer, keys[37:], 150)
    reader = _open_backend(store_uri, "records", ttl=600.0, capacity=capacity)
    for key in keys[-capacity:]:
        assert reader.recall(key) == f'[{{"x": "{key}"}}]'.encode()
    for key in keys[:10] + keys[500:510]:
        assert reader.recall(key) is None
    writer.close()
    reader.close()


def test_a_record_written_again_replaces_the_first(store_uri):
    log = _open_backend(store_uri, "records", ttl=600.0, capacity=1000)
    log.remember("puid-1", b"[1]")
    log._writer.flush()
    log.remember("puid-1", b"[2]")
    log.remember("puid-2", b"[3]")
    log._writer.flush()
    other = _open_backend(store_uri, "records", ttl=600.0, capacity=1000)
    assert (other.recall("puid-1"), other.recall("puid-2")) == (b"[2]", b"[3]")


def test_an_expired_record_is_not_recalled(store_uri):
    log = _open_backend(store_uri, "records", ttl=1.0, capacity=1000)
    log.remember("puid-1", b"[1]")
    log._writer.flush()
    other = _open_backend(store_uri, "records", ttl=1.0, capacity=1000)
    assert other.recall("puid-1") == b"[1]"
    time.sleep(2.1)  # Redis counts a time to live in whole seconds
    assert other.recall("puid-1") is None
    assert log.recall("puid-1") is None

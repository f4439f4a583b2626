"""The Redis learning log against a real redis-server that requires a password, the way the
manifests deploy it (``--requirepass`` from a Secret that the components get as
``SELDON_RIVER_REDIS_PASSWORD``)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from model_wrappers.log.base import LogUnavailable
from model_wrappers.log.redis import PASSWORD_ENV, RedisLog
from support import free_port, require, wait_until

PASSWORD = "s3cret-for-this-test"


@pytest.fixture
def protected_redis(tmp_path):
    require("redis-server", shutil.which("redis-server") is not None, "apt-get install redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
         "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    wait_until(lambda: redis.Redis(port=port, password=PASSWORD).ping(), 20, "redis-server", proc)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def test_the_password_comes_from_the_environment(protected_redis, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    log = RedisLog(protected_redis, "pw")
    first = log.append(b"one")
    assert log.read(first - 1) == [(first, b"one")]
    log.close()


def test_without_the_password_the_log_is_unavailable(protected_redis, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    log = RedisLog(protected_redis, "pw")
    with pytest.raises(LogUnavailable, match="(?i)auth"):
        log.append(b"one")
    log.close()


def test_a_password_in_the_uri_wins_over_the_environment(protected_redis, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    log = RedisLog(protected_redis.replace("redis://", f"redis://:{PASSWORD}@"), "pw")
    assert log.append(b"two") >= 1
    log.close()

"""Authentication of shared state: seals refuse altered blobs, the key is read from the environment."""

from __future__ import annotations

import pytest

from model_wrappers import config
from model_wrappers.log.seal import Seal, TamperedState

KEY = b"0123456789abcdef0123456789abcdef"


def test_sealed_blob_opens_with_the_same_key_and_context():
    sealed = Seal(KEY).seal(b"payload", b"checkpoint:log:3")
    assert Seal(KEY).open(sealed, b"checkpoint:log:3", "checkpoint 3") == b"payload"


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s[:-1] + bytes([s[-1] ^ 1]),  # blob altered
        lambda s: bytes([s[0] ^ 1]) + s[1:],  # tag altered
        lambda s: s[:10],  # truncated
    ],
)
def test_altered_blob_is_refused_naming_it(change):
    sealed = Seal(KEY).seal(b"payload", b"record:log:p1")
    with pytest.raises(TamperedState, match="refused prediction record 'p1'"):
        Seal(KEY).open(change(sealed), b"record:log:p1", "prediction record 'p1'")


def test_blob_is_bound_to_its_context_and_key():
    sealed = Seal(KEY).seal(b"payload", b"checkpoint:log:3")
    with pytest.raises(TamperedState):
        Seal(KEY).open(sealed, b"checkpoint:log:4", "checkpoint 4")
    with pytest.raises(TamperedState):
        Seal(b"another key of 16+ bytes").open(sealed, b"checkpoint:log:3", "checkpoint 3")


def test_short_key_is_rejected():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Seal(b"short")


def test_state_key_from_env_and_file(monkeypatch, tmp_path):
    monkeypatch.delenv(config.STATE_KEY_ENV, raising=False)
    monkeypatch.delenv(config.STATE_KEY_FILE_ENV, raising=False)
    assert config.state_key() is None
    monkeypatch.setenv(config.STATE_KEY_ENV, "from-env")
    assert config.state_key() == b"from-env"
    secret = tmp_path / "key"
    secret.write_bytes(KEY + b"\n")
    monkeypatch.setenv(config.STATE_KEY_FILE_ENV, str(secret))
    assert config.state_key() == KEY
    monkeypatch.setenv(config.STATE_KEY_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="cannot read the state key"):
        config.state_key()

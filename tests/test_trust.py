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


# -- the learning log with a key: checkpoints and records in a real store ------------------------

from model_wrappers.log import _open_backend, open_log  # noqa: E402


@pytest.fixture(params=["sqlite", "redis"])
def store_uri(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("redis_server").url


@pytest.fixture
def keyed_env(monkeypatch):
    monkeypatch.delenv(config.STATE_KEY_FILE_ENV, raising=False)
    monkeypatch.setenv(config.STATE_KEY_ENV, KEY.decode())


def test_checkpoint_round_trips_and_a_forged_one_is_refused(store_uri, keyed_env):
    log = open_log(store_uri, "trust")
    assert log.save_checkpoint(5, b"state at 5")
    assert log.load_checkpoint() == (5, b"state at 5")
    raw = _open_backend(store_uri, "trust", ttl=60.0, capacity=100)
    assert raw.load_checkpoint().blob != b"state at 5"  # what the store holds is sealed
    assert raw.save_checkpoint(6, b"forged pickle")  # a store writer without the key
    with pytest.raises(TamperedState, match="refused checkpoint at position 6 of log 'trust'"):
        open_log(store_uri, "trust").load_checkpoint()
    # a genuine sealed blob moved to another position does not verify either
    genuine = Seal(KEY).seal(b"state at 5", b"checkpoint:trust:5")
    assert raw.save_checkpoint(7, genuine)
    with pytest.raises(TamperedState, match="position 7"):
        log.load_checkpoint()


def test_forged_record_is_absent_with_a_warning(store_uri, keyed_env, caplog):
    log = open_log(store_uri, "trust")
    log.remember("p1", b'{"x": 1}')
    log.inner._writer.flush()
    assert open_log(store_uri, "trust").recall("p1") == b'{"x": 1}'
    raw = _open_backend(store_uri, "trust", ttl=60.0, capacity=100)
    raw.remember("p1", b'{"x": 2}')
    raw._writer.flush()
    with caplog.at_level("WARNING"):
        assert open_log(store_uri, "trust").recall("p1") is None
    assert "refused prediction record 'p1'" in caplog.text


def test_without_a_key_blobs_are_stored_as_given(store_uri, monkeypatch):
    monkeypatch.delenv(config.STATE_KEY_ENV, raising=False)
    monkeypatch.delenv(config.STATE_KEY_FILE_ENV, raising=False)
    log = open_log(store_uri, "plain")
    assert log.save_checkpoint(3, b"state")
    assert _open_backend(store_uri, "plain", ttl=60.0, capacity=100).load_checkpoint() == (3, b"state")


# -- signed model folders -------------------------------------------------------------------------

from river import linear_model  # noqa: E402

from model_wrappers.artifact import ArtifactError, export_model, load_model  # noqa: E402


def test_signed_folder_loads_and_a_changed_one_is_refused(tmp_path, keyed_env):
    folder = tmp_path / "m"
    export_model(linear_model.LogisticRegression(), folder, key=KEY, name="model")
    assert load_model(folder).metadata.sha256
    meta = folder / "seldon-river.json"
    original = meta.read_text()
    meta.write_text(original.replace('"model"', '"renamed"'))
    with pytest.raises(ArtifactError, match="changed after it was signed"):
        load_model(folder)
    meta.write_text(original)
    other = tmp_path / "other"
    export_model(linear_model.LinearRegression(), other)
    (folder / "model.dill").write_bytes((other / "model.dill").read_bytes())
    with pytest.raises(ArtifactError, match="sha256"):
        load_model(folder)


def test_unsigned_folder_refused_with_a_key_and_signed_refused_without(tmp_path, keyed_env, monkeypatch):
    unsigned = tmp_path / "u"
    export_model(linear_model.LogisticRegression(), unsigned)
    with pytest.raises(ArtifactError, match="no seldon-river.sig"):
        load_model(unsigned)
    signed = tmp_path / "s"
    export_model(linear_model.LogisticRegression(), signed, key=KEY)
    monkeypatch.delenv(config.STATE_KEY_ENV)
    with pytest.raises(ArtifactError, match="no state key is configured"):
        load_model(signed)
    assert load_model(unsigned).pipeline is not None

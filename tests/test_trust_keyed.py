"""Authentication of keyed mode and of model folders' metadata reads.

- Per-key state blobs in the key store are sealed like checkpoints: a forged blob, a genuine
  one moved to another key or claiming a newer position, is refused before it is unpickled, in
  the store (SQLite and a real ``redis-server``) and in a served keyed component.
- Keyed model folders are signed: ``seldon-river-keyed.sig`` covers ``seldon-river-keyed.json``
  (and so ``keys.db``); either file changed, or a folder unsigned under a key, is refused.
- ``load_model`` reads ``seldon-river.json`` once and parses the bytes it verified.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from river import linear_model

from model_wrappers import artifact, config
from model_wrappers.artifact import ArtifactError, export_model, load_model
from model_wrappers.errors import StateUnavailable
from model_wrappers.keyed_artifact import KEYED_FILE, KEYED_SIGNATURE_FILE, export_keyed, load_keyed
from model_wrappers.keyed_model import KeyedRiverModel
from model_wrappers.log.base import LogUnavailable
from model_wrappers.log.keystore import open_keystore
from model_wrappers.synthetic import FEATURES, candidates

KEY = b"0123456789abcdef0123456789abcdef"
ROW = {f: 1.0 for f in FEATURES}


@pytest.fixture
def with_key(monkeypatch):
    monkeypatch.delenv(config.STATE_KEY_FILE_ENV, raising=False)
    monkeypatch.setenv(config.STATE_KEY_ENV, KEY.decode())


@pytest.fixture
def without_key(monkeypatch):
    monkeypatch.delenv(config.STATE_KEY_FILE_ENV, raising=False)
    monkeypatch.delenv(config.STATE_KEY_ENV, raising=False)


@pytest.fixture(params=["sqlite", "redis"])
def store_uri(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("redis_server").url


def raw_store(uri: str, name: str, monkeypatch):
    """The store as a writer without the key sees it."""
    with monkeypatch.context() as env:
        env.delenv(config.STATE_KEY_ENV, raising=False)
        return open_keystore(uri, name)


# -- the key store -------------------------------------------------------------------------------
def test_sealed_key_blobs_round_trip_and_forged_ones_are_refused(store_uri, with_key, monkeypatch):
    store = open_keystore(store_uri, "keys")
    assert store.save([("a", 3, "{}", b"state of a"), ("b", 3, "{}", b"state of b")], commit=3) == 2
    assert store.load(["a", "b"]) == {"a": (3, b"state of a"), "b": (3, b"state of b")}
    assert [row for rows in store.scan() for row in rows if row[0] == "a"] == [("a", 3, b"state of a")]
    raw = raw_store(store_uri, "keys", monkeypatch)
    assert raw.load(["a"])["a"][1] != b"state of a"  # what the store holds is sealed
    assert raw.save([("a", 4, "{}", b"forged pickle")]) == 1
    with pytest.raises(LogUnavailable, match="refused the stored state of key 'a' at position 4 of 'keys'"):
        store.load(["a"])
    with pytest.raises(LogUnavailable, match="key 'a'"):
        [rows for rows in store.scan()]
    assert store.load(["b"]) == {"b": (3, b"state of b")}  # other keys are unaffected


def test_a_genuine_blob_cannot_move_to_another_key_or_position(store_uri, with_key, monkeypatch):
    store = open_keystore(store_uri, "keys")
    store.save([("a", 3, "{}", b"state of a")])
    raw = raw_store(store_uri, "keys", monkeypatch)
    sealed = raw.load(["a"])["a"][1]
    raw.save([("b", 3, "{}", sealed), ("a", 9, "{}", sealed)])  # another key; a newer position
    with pytest.raises(LogUnavailable, match="key 'b' at position 3"):
        store.load(["b"])
    with pytest.raises(LogUnavailable, match="key 'a' at position 9"):
        store.load(["a"])


def test_without_a_key_key_blobs_are_stored_as_given(tmp_path, without_key):
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    open_keystore(uri, "plain").save([("a", 1, "{}", b"state")])
    assert open_keystore(uri, "plain").load(["a"]) == {"a": (1, b"state")}
    assert "authenticated" not in open_keystore(uri, "plain").describe()


# -- a keyed component with a tampered key store -----------------------------------------------------
def keyed_folder(folder: Path, key: bytes | None = KEY, **kwargs) -> Path:
    export_keyed(folder, templates=candidates(), features=FEATURES, key_feature="product_id", name="m5",
                 min_observations=2, key=key, **kwargs)
    return folder


def component(folder: Path, state_uri: str, **params) -> KeyedRiverModel:
    model = KeyedRiverModel(model_uri=str(folder), state_uri=state_uri, checkpoint_every=1, **params)
    model.load()
    return model


def test_served_keyed_state_with_a_forged_key_blob_is_refused(tmp_path, with_key, monkeypatch):
    folder = keyed_folder(tmp_path / "keyed")
    uri = f"sqlite:///{tmp_path / 'keyed.db'}"
    served = component(folder, uri)
    for key in ("p1", "p2"):
        reply = served.send_feedback_raw({"request": {"jsonData": [{"product_id": key, **ROW}]},
                                          "truth": {"jsonData": [2.0]}})
        assert reply["meta"]["tags"]["seldon_river_position"] >= 1
    expected = served.predict_raw({"jsonData": [{"product_id": "p1", **ROW}]})["jsonData"]
    name = served.store.name
    assert sorted(k for rows in served.store.scan() for k, _, _ in rows) == ["p1", "p2"]  # checkpointed
    raw = raw_store(uri, name, monkeypatch)
    position = raw.load(["p1"])["p1"][0]
    raw._db.execute("UPDATE keyed_states SET blob = ? WHERE name = ? AND key = 'p1'", (b"forged", name))
    # A restart preloads every stored key: the forged one stops it, naming the key.
    with pytest.raises(LogUnavailable, match=f"key 'p1' at position {position}"):
        component(folder, uri, preload=True)
    # Without preloading, the key is refused when it is asked for; other keys are served.
    lazy = component(folder, uri)
    with pytest.raises(StateUnavailable, match="refused the stored state of key 'p1'"):
        lazy.predict_raw({"jsonData": [{"product_id": "p1", **ROW}]})
    assert lazy.predict_raw({"jsonData": [{"product_id": "p2", **ROW}]})["jsonData"]
    assert served.predict_raw({"jsonData": [{"product_id": "p1", **ROW}]})["jsonData"] == expected


# -- signed keyed folders ----------------------------------------------------------------------------
def test_signed_keyed_folder_loads_and_a_changed_one_is_refused(tmp_path, with_key):
    folder = keyed_folder(tmp_path / "keyed", mapping={"p1": linear_model.LinearRegression()})
    assert (folder / KEYED_SIGNATURE_FILE).is_file() and (folder / "seldon-river.sig").is_file()
    assert sorted(load_keyed(folder).listed) == ["p1"]
    keyed = folder / KEYED_FILE
    original = keyed.read_text()
    keyed.write_text(original.replace('"min_observations": 2', '"min_observations": 3'))
    with pytest.raises(ArtifactError, match=f"{KEYED_SIGNATURE_FILE} does not match {KEYED_FILE}"):
        load_keyed(folder)
    # keys.db swapped for another folder's, with its recorded sha256 edited to match: refused.
    other = keyed_folder(tmp_path / "other", mapping={"p9": linear_model.LinearRegression()})
    shutil.copy(other / "keys.db", folder / "keys.db")
    data = json.loads(original)
    data["keys_sha256"] = json.loads((other / KEYED_FILE).read_text())["keys_sha256"]
    keyed.write_text(json.dumps(data, indent=2) + "\n")
    with pytest.raises(ArtifactError, match="changed after it was signed"):
        load_keyed(folder)
    keyed.write_text(original)
    with pytest.raises(ArtifactError, match="keys.db has sha256"):
        load_keyed(folder)


def test_one_signature_cannot_stand_for_the_other(tmp_path, with_key):
    folder = keyed_folder(tmp_path / "keyed")
    # Both metadata files signed under one purpose would let a signature be moved; they are not.
    shutil.copy(folder / "seldon-river.json", folder / KEYED_FILE)
    shutil.copy(folder / "seldon-river.sig", folder / KEYED_SIGNATURE_FILE)
    with pytest.raises(ArtifactError, match="does not match"):
        load_keyed(folder)


def test_unsigned_keyed_folder_refused_with_a_key_and_signed_refused_without(tmp_path, with_key, monkeypatch):
    unsigned = keyed_folder(tmp_path / "u", key=None)
    with pytest.raises(ArtifactError, match="no seldon-river"):
        load_keyed(unsigned)
    signed = keyed_folder(tmp_path / "s")
    (signed / "seldon-river.sig").unlink()  # the keyed part alone signed is not enough
    with pytest.raises(ArtifactError, match="no seldon-river.sig"):
        load_keyed(signed)
    half = keyed_folder(tmp_path / "h")
    (half / KEYED_SIGNATURE_FILE).unlink()
    with pytest.raises(ArtifactError, match=f"no {KEYED_SIGNATURE_FILE}"):
        load_keyed(half)
    monkeypatch.delenv(config.STATE_KEY_ENV)
    with pytest.raises(ArtifactError, match="no state key is configured"):
        load_keyed(keyed_folder(tmp_path / "s2"))
    assert load_keyed(unsigned).candidates
    assert artifact.folder_problem(tmp_path / "s2", keyed=True) is not None
    assert artifact.folder_problem(unsigned, keyed=True) is None


def test_export_keyed_command_signs_with_the_configured_key(tmp_path, with_key):
    import dill

    from model_wrappers.cli import main

    templates = tmp_path / "templates.dill"
    templates.write_bytes(dill.dumps(linear_model.LinearRegression()))
    folder = tmp_path / "cli"
    assert main(["export-keyed", str(folder), "--templates", str(templates), "--features", "x",
                 "--key-feature", "k", "--sign"]) == 0
    assert (folder / KEYED_SIGNATURE_FILE).is_file()
    assert load_keyed(folder).candidates == ("model",)


# -- one read of seldon-river.json -------------------------------------------------------------------
def test_load_model_reads_the_metadata_once(tmp_path, with_key, monkeypatch):
    folder = tmp_path / "m"
    export_model(linear_model.LinearRegression(), folder, key=KEY, name="model")
    reads = []
    real_bytes, real_text = Path.read_bytes, Path.read_text

    def counted(real):
        def read(path, *args, **kwargs):
            if path.name == "seldon-river.json":
                reads.append(real.__name__)
            return real(path, *args, **kwargs)
        return read

    monkeypatch.setattr(Path, "read_bytes", counted(real_bytes))
    monkeypatch.setattr(Path, "read_text", counted(real_text))
    assert load_model(folder).metadata.name == "model"
    assert reads == ["read_bytes"]


def test_metadata_swapped_after_its_check_is_not_what_is_used(tmp_path, with_key, monkeypatch):
    folder = tmp_path / "m"
    export_model(linear_model.LinearRegression(), folder, key=KEY, name="model")
    meta = folder / "seldon-river.json"
    forged = meta.read_text().replace('"name": "model"', '"name": "forged"')
    real = artifact.check_signature

    def then_swap(*args, **kwargs):
        real(*args, **kwargs)
        meta.write_text(forged)  # between the check and the parse

    monkeypatch.setattr(artifact, "check_signature", then_swap)
    assert load_model(folder).metadata.name == "model"
    monkeypatch.setattr(artifact, "check_signature", real)
    with pytest.raises(ArtifactError, match="changed after it was signed"):
        load_model(folder)


# -- pull under a key ---------------------------------------------------------------------------------
def test_pull_under_a_key_writes_a_folder_that_loads_under_that_key(tmp_path, with_key):
    from model_wrappers.learned_state import Source, pull
    from model_wrappers.river_model import RiverModel

    folder = tmp_path / "m"
    export_model(linear_model.LinearRegression(), folder, key=KEY, features=["x"], name="m")
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    served = RiverModel(model_uri=str(folder), state_uri=uri)
    served.load()
    served.send_feedback_raw({"request": {"data": {"names": ["x"], "ndarray": [[1.0]]}},
                              "truth": {"data": {"ndarray": [[2.0]]}}})
    served.replica.log.close()
    pull(Source.of_folder(folder, state_uri=uri), tmp_path / "pulled")
    assert (tmp_path / "pulled" / "seldon-river.sig").is_file()
    assert load_model(tmp_path / "pulled").metadata.provenance["position"] == 1


def test_export_sign_without_a_key_is_refused_saying_so(tmp_path, without_key, capsys):
    import dill

    from model_wrappers.cli import main

    pipeline = tmp_path / "p.dill"
    pipeline.write_bytes(dill.dumps(linear_model.LinearRegression()))
    assert main(["export", str(pipeline), str(tmp_path / "m"), "--features", "x", "--sign"]) == 1
    assert "--sign needs a state key" in capsys.readouterr().err
    assert not (tmp_path / "m" / "seldon-river.json").exists()

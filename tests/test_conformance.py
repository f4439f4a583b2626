"""The project's server answers as Seldon's seldon-core-microservice does, call for call.

Every call of tests/conformance/corpus.py is sent, in order, to one component under each
server (each with its own learning log, so both learn the same sequence); the replies are
compared after normalising what is meant to differ between two runs: generated request ids,
worker ids and timings. The calls listed in ``corpus.DIFFERENCES`` are answered differently on
purpose; for those, each server's answer must be exactly the one recorded there.
"""

from __future__ import annotations

import json
import threading
import urllib.parse

import grpc
import pytest
import requests
from google.protobuf import json_format
from seldon_core.proto import prediction_pb2

from conformance.corpus import CORPUS, DEFAULTS, DIFFERENCES, NDARRAY, SETTINGS, UNIT, Grpc, Rest
from model_wrappers.keyed_artifact import export_keyed
from model_wrappers.synthetic import FEATURES, candidates
from support import SERVERS, Microservice, export_regressor, pretty

TIMEOUT = 20.0


def _keyed_folder(folder):
    export_keyed(folder, templates=candidates(), features=FEATURES, key_feature="product_id", name="m5",
                 min_observations=2)
    return folder


COMPONENTS = {
    "model": ("model_wrappers.RiverModel", "MODEL", lambda tmp: {"model_uri": str(export_regressor(tmp / "model"))}),
    "router": ("model_wrappers.BanditRouter", "ROUTER", lambda tmp: {"n_arms": 2, "seed": 1}),
    "detector": ("model_wrappers.OutlierDetector", "TRANSFORMER", lambda tmp: {"warm_up": 3, "n_trees": 5, "seed": 1}),
    "keyed": ("model_wrappers.KeyedRiverModel", "MODEL", lambda tmp: {"model_uri": str(_keyed_folder(tmp / "keyed"))}),
}


def start_both(services, name: str, tmp_path, settings: dict | None = None) -> dict[str, Microservice]:
    """The component under each server, started side by side, each with its own log."""
    class_path, service_type, parameters = COMPONENTS[name]
    shared = parameters(tmp_path)
    started: dict[str, Microservice] = {}
    errors: list[BaseException] = []

    def start(server: str) -> None:
        workdir = tmp_path / server
        service = services.add(Microservice(
            class_path, service_type, {"state_uri": f"sqlite:///{workdir}/state.db", **shared}, workdir,
            env={"PREDICTIVE_UNIT_ID": UNIT, **(SETTINGS if settings is None else settings)}, name=name, server=server))
        try:
            started[server] = service.start()
        except BaseException as exc:  # noqa: BLE001 - reported below, after both have tried
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(server,)) for server in SERVERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return started


# -- sending one call --------------------------------------------------------------------------
def send_rest(service: Microservice, call: Rest) -> dict:
    url = f"{service.rest_url}{call.path}" + (f"?{call.query}" if call.query else "")
    headers = {"Seldon-Puid": call.puid} if call.puid else {}
    text = call.text if call.text is not None else json.dumps(call.body)
    if call.method == "GET" and call.send != "query":
        reply = requests.get(url, headers=headers, timeout=TIMEOUT)
    elif call.send == "query":
        reply = requests.get(f"{url}?json={urllib.parse.quote(text)}", headers=headers, timeout=TIMEOUT)
    elif call.send == "form":
        reply = requests.post(url, data={"json": text}, headers=headers, timeout=TIMEOUT)
    elif call.send == "bare":
        reply = requests.post(url, data=text.encode(), headers=headers, timeout=TIMEOUT)
    else:  # json and raw: the text as the body, declared JSON
        reply = requests.post(url, data=text.encode(), headers={"Content-Type": "application/json", **headers},
                              timeout=TIMEOUT)
    try:
        body = reply.json()
    except ValueError:
        body = reply.text
    return {"status": reply.status_code, "body": body}


MESSAGE_KINDS = {"SeldonMessage": prediction_pb2.SeldonMessage, "Feedback": prediction_pb2.Feedback}
REPLY_KINDS = {"Metadata": prediction_pb2.SeldonModelMetadata}


def send_grpc(service: Microservice, call: Grpc) -> dict:
    data = call.raw if call.raw is not None else \
        json_format.ParseDict(call.body, MESSAGE_KINDS[call.kind]()).SerializeToString()
    reply_kind = REPLY_KINDS.get(call.rpc.rsplit("/", 1)[1], prediction_pb2.SeldonMessage)
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc}") as channel:
        method = channel.unary_unary(call.rpc, request_serializer=None, response_deserializer=reply_kind.FromString)
        try:
            reply = method(data, timeout=TIMEOUT, metadata=[("seldon-puid", call.puid)] if call.puid else None)
        except grpc.RpcError as error:
            return {"code": error.code().name, "details": error.details()}
    return {"code": "OK", "reply": json_format.MessageToDict(reply)}


def send(service: Microservice, call) -> dict:
    return send_rest(service, call) if isinstance(call, Rest) else send_grpc(service, call)


# -- what may differ between two runs ------------------------------------------------------------
VOLATILE = {"pid", "worker_id"}  # which process answered: differs between any two runs


def normalise(value, sent_puids: set[str], workdir: str):
    """``value`` with generated ids, timings and the server's own folder replaced by placeholders."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in VOLATILE:
                out[key] = "<volatile>"
            elif key == "puid" and isinstance(item, str) and item not in sent_puids:
                out[key] = "<generated>"
            else:
                out[key] = normalise(item, sent_puids, workdir)
        return out
    if isinstance(value, list):
        return [normalise(item, sent_puids, workdir) for item in value]
    if isinstance(value, str):
        return value.replace(workdir, "<workdir>")
    return value


def puids_of(calls) -> set[str]:
    """Every request id the corpus itself sends (headers, metadata, ``puid`` fields of bodies)."""
    found = {call.puid for call in calls if call.puid}

    def visit(value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "puid" and isinstance(item, str):
                    found.add(item)
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    for call in calls:
        visit(call.body)
    return found


def run_corpus(services, name: str, tmp_path) -> list[tuple[object, dict, dict]]:
    """Every call of the component's corpus on both servers: (call, seldon-river's answer, seldon-core's)."""
    both = start_both(services, name, tmp_path)
    calls = CORPUS[name]
    sent = puids_of(calls)
    out = []
    for call in calls:
        ours, stock = (normalise(send(both[server], call), sent, str(tmp_path / server)) for server in SERVERS)
        out.append((call, ours, stock))
    return out


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_both_servers_answer_every_call_alike(services, tmp_path, name):
    results = run_corpus(services, name, tmp_path)
    unexpected = []
    for call, ours, stock in results:
        recorded = DIFFERENCES.get((name, call.name))
        if recorded is None:
            if ours != stock:
                unexpected.append(f"{call.name} ({call}):\n  seldon-river: {pretty(ours)}\n  seldon-core:  {pretty(stock)}")
            continue
        assert ours == recorded["seldon-river"], f"{call.name}: seldon-river answered {pretty(ours)}"
        assert stock == recorded["seldon-core"], f"{call.name}: seldon-core answered {pretty(stock)}"
    assert not unexpected, f"{len(unexpected)} of {len(results)} calls answered differently:\n" + "\n".join(unexpected)
    names = {call.name for call, _, _ in results}
    assert len(names) == len(results), "two calls of one component share a name"
    assert {key for comp, key in DIFFERENCES if comp == name} <= names, "a recorded difference names no call"


def test_metrics_in_replies_is_a_recorded_difference_of_defaults(services, tmp_path, monkeypatch):
    """Left to their defaults, one server keeps the custom metrics in replies and the other does not."""
    monkeypatch.delenv("INCLUDE_METRICS_IN_CLIENT_RESPONSE", raising=False)
    both = start_both(services, "model", tmp_path, settings={})
    recorded = DEFAULTS["INCLUDE_METRICS_IN_CLIENT_RESPONSE"]
    for server in SERVERS:
        reply = send(both[server], Rest("predict", "/predict", NDARRAY))
        assert reply["status"] == 200, reply
        assert ("metrics" in reply["body"]["meta"]) is recorded[server], (server, reply)

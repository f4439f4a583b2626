"""The project's own server (seldon-river-microservice): what the component tests do not cover.

Every component test runs on this server by default (and tests/test_river_model.py on Seldon's
wrapper too); here: the body forms, paths, metrics port, gRPC decoding errors, several workers,
SIGTERM, and group commit of concurrent feedbacks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse

import grpc
import pytest
import requests

from model_wrappers.log.base import LogUnavailable
from model_wrappers.log.group_commit import GroupCommit
from support import REPO, PHISHING_FEATURES, BlockingLog, model_service, phishing_stream, rows_payload


@pytest.fixture
def served(services, phishing_folder, tmp_path):
    return model_service(services, phishing_folder, tmp_path, f"sqlite:///{tmp_path}/state.db",
                         server="seldon-river")


def one_row() -> dict:
    x, _ = next(phishing_stream(1))
    return rows_payload([x], PHISHING_FEATURES)


def test_every_body_form_gives_the_same_prediction(served):
    body = one_row()
    import json

    text = json.dumps(body)
    as_json = requests.post(f"{served.rest_url}/predict", json=body, timeout=10)
    bare = requests.post(f"{served.rest_url}/predict", data=text, timeout=10)  # no Content-Type
    form = requests.post(f"{served.rest_url}/predict", data={"json": text}, timeout=10)
    query = requests.get(f"{served.rest_url}/predict?json={urllib.parse.quote(text)}", timeout=10)
    replies = [r.json()["data"] for r in (as_json, bare, form, query)]
    assert [r.status_code for r in (as_json, bare, form, query)] == [200] * 4
    assert all(reply == replies[0] for reply in replies)


def test_unknown_paths_and_empty_bodies_are_clear_errors(served):
    missing = requests.get(f"{served.rest_url}/no-such-path", timeout=10)
    assert missing.status_code == 404 and "no such path" in missing.json()["status"]["info"]
    empty = requests.post(f"{served.rest_url}/api/v1.0/predictions", data=b"", timeout=10)
    assert empty.status_code == 400 and "no JSON message" in empty.json()["status"]["info"]
    broken = requests.post(f"{served.rest_url}/api/v1.0/feedback", data=b"[1, 2", timeout=10)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["status"]["info"]
    not_feedback = requests.post(f"{served.rest_url}/api/v1.0/feedback", json=[1, 2], timeout=10)
    assert not_feedback.status_code == 400 and "Feedback" in not_feedback.json()["status"]["info"]
    assert requests.get(f"{served.rest_url}/health/ping", timeout=10).text == "pong"


def test_undecodable_grpc_bytes_are_invalid_argument(served):
    channel = grpc.insecure_channel(f"127.0.0.1:{served.grpc}")
    try:
        for path in ("/seldon.protos.Model/Predict", "/seldon.protos.Model/SendFeedback"):
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary(path)(b"\xff\xff\xff", timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "is not a seldon.protos." in caught.value.details()
    finally:
        channel.close()
    assert served.status()["replica"]["position"] == 0


def test_metrics_on_both_paths_without_metrics_in_replies(served):
    reply = served.predict(one_row()).json()
    assert "metrics" not in reply["meta"]  # recorded by the server, taken out of the reply as Seldon does
    x, y = next(phishing_stream(1))
    ack = served.feedback({"request": rows_payload([x], PHISHING_FEATURES), "truth": {"jsonData": [y]}, "reward": 0.5})
    assert ack.status_code == 200
    for path in ("/prometheus", "/metrics"):
        text = requests.get(f"http://127.0.0.1:{served.metrics}{path}", timeout=10).text
        assert 'seldon_river_learned{' in text and 'method="feedback"' in text
        assert "seldon_api_model_feedback_reward_total" in text


def test_two_workers_share_the_ports_and_the_learned_state(services, phishing_folder, tmp_path):
    service = model_service(services, phishing_folder, tmp_path, f"sqlite:///{tmp_path}/state.db",
                            workers=2, server="seldon-river")
    pids, positions = set(), set()
    rows = list(phishing_stream(20))
    for x, y in rows:
        ack = service.feedback({"request": rows_payload([x], PHISHING_FEATURES), "truth": {"jsonData": [y]}})
        assert ack.status_code == 200
    for i in range(400):  # a new connection each time: whichever worker accepts it answers
        status = service.status()["replica"]
        pids.add(status["pid"])
        positions.add(status["position"])
        if len(pids) == 2 and i >= 20:
            break
    assert len(pids) == 2
    assert positions == {len(rows)}


def test_sigterm_stops_every_process(services, phishing_folder, tmp_path):
    service = model_service(services, phishing_folder, tmp_path, f"sqlite:///{tmp_path}/state.db",
                            workers=2, server="seldon-river")
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=20) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{service.rest_url}/health/ping", timeout=2)


@pytest.mark.parametrize("flag", ["--http-port", "--grpc-port", "--metrics-port"])
def test_a_taken_port_is_one_line_on_stderr_and_exit_code_1(flag):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "model_wrappers.server", "benchmarks.baselines.floor.Floor", "--host", "127.0.0.1",
             flag, str(port)],
            capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("seldon-river-microservice: cannot listen ")
    assert f"127.0.0.1:{port}" in last


def _submit_concurrently(commits: GroupCommit, log: BlockingLog, n: int):
    results, errors = {}, {}

    def submit(i):
        try:
            results[i] = commits.append(f'{{"i":{i}}}'.encode())
        except LogUnavailable as exc:
            errors[i] = exc

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    assert log.entered.wait(10)
    others = [threading.Thread(target=submit, args=(i,)) for i in range(1, n)]
    for t in others:
        t.start()
    while len(commits._waiting) < n - 1:  # every other caller is queued behind the first transaction
        threading.Event().wait(0.01)
    log.release.set()
    for t in (first, *others):
        t.join(10)
    return results, errors


def test_concurrent_appends_share_one_transaction(tmp_path):
    log = BlockingLog(tmp_path / "state.db", "group")
    commits = GroupCommit(log)
    results, errors = _submit_concurrently(commits, log, 8)
    assert not errors
    assert log.batches == [1, 7]
    assert sorted(results.values()) == list(range(1, 9))
    assert [p for p, _ in log.read(0)] == list(range(1, 9))


def test_a_failed_transaction_fails_every_caller_and_writes_nothing(tmp_path):
    log = BlockingLog(tmp_path / "state.db", "group", fail=True)
    commits = GroupCommit(log)
    results, errors = _submit_concurrently(commits, log, 5)
    assert not results and sorted(errors) == list(range(5))
    assert log.read(0) == [] and log.head() == 0


class RecordingTransport:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.writes.append(data)

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2), "socket": object()}.get(name, default)


def test_a_response_written_in_parts_leaves_in_one_write():
    import asyncio

    from model_wrappers.server.coalesce import CoalescingTransport

    async def scenario():
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        transport.write(b"pong")
        assert inner.writes == []  # nothing sent before the loop's turn ends
        await asyncio.sleep(0)
        first = list(inner.writes)
        transport.write(b"last")
        transport.close()  # what is pending goes out before the connection closes
        return first, inner, transport.get_extra_info("peername")

    first, inner, peer = asyncio.run(scenario())
    assert first == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npong"]
    assert inner.writes[1:] == [b"last"] and inner.closed and peer == ("127.0.0.1", 1)


def test_uvicorn_reads_a_connections_addresses_without_its_socket_object():
    import asyncio

    from uvicorn.protocols.utils import get_local_addr, get_remote_addr

    from model_wrappers.server.coalesce import CoalescingTransport

    async def scenario():
        transport = CoalescingTransport(RecordingTransport(), asyncio.get_running_loop())
        return transport.get_extra_info("socket"), get_remote_addr(transport), get_local_addr(transport)

    assert asyncio.run(scenario()) == (None, ("127.0.0.1", 1), ("127.0.0.1", 2))

"""The live view: ``/live`` and ``/live/events`` of a component and of ``seldon-river run``.

Plain HTTP for the stream's framing, a client that goes away and the cap on streams; headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by selenium) for the page: the
figures it shows must be those ``/health/status`` serves once feedback is learned.
A screenshot of each page is saved under the test's tmp_path (printed), and also written where
``SELDON_RIVER_SCREENSHOT`` (the drifting classifier: docs/live-view.png),
``SELDON_RIVER_GRAPH_SCREENSHOT`` (the run: docs/live-view-graph.png) or
``SELDON_RIVER_PLAIN_SCREENSHOT`` (the plain classifier) say, relative to the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import requests

from local_run import MANIFESTS, export_models
from support import (
    PHISHING_FEATURES,
    REPO,
    as_dict,
    model_service,
    phishing_stream,
    require,
    seldon_client,
    truth,
    wait_until,
)

MAX_STREAMS = 2
BATCHES, BATCH_ROWS = 4, 25
DRIFT_ROWS, DRIFT_BATCH = 1200, 100  # the concept changes at row 600 (tests/drift_streams.py)
TOKEN = "live-view-token-0123456789"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]


@pytest.fixture
def served(services, phishing_folder, tmp_path):
    service = model_service(services, phishing_folder, tmp_path, f"sqlite:///{tmp_path}/state.db",
                            server="seldon-river")
    return service


@pytest.fixture
def capped(services, phishing_folder, tmp_path):
    """A component whose live view serves at most MAX_STREAMS streams."""
    return services.start("model_wrappers.RiverModel", "MODEL",
                          {"model_uri": str(phishing_folder), "state_uri": f"sqlite:///{tmp_path}/capped.db"},
                          tmp_path, name="capped", server="seldon-river",
                          env={"SELDON_RIVER_LIVE_MAX_STREAMS": str(MAX_STREAMS)})


def live_url(service) -> str:
    return f"http://127.0.0.1:{service.metrics}/live"


class Events:
    """A raw /live/events stream over a socket: its header and its frames, read one by one."""

    def __init__(self, port: int, path: str = "/live/events", headers: dict | None = None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        self.status = int(head[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        self.body = b""

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the stream")
            self.buffer += data
        found, _, self.buffer = self.buffer.partition(marker)
        return found

    def frame(self) -> str:
        """The next server-sent event block (without its blank line)."""
        while b"\n\n" not in self.body:
            if self.chunked:
                size = int(self._until(b"\r\n"), 16)
                while len(self.buffer) < size + 2:
                    data = self.sock.recv(65536)
                    if not data:
                        raise ConnectionError("the server closed the stream")
                    self.buffer += data
                self.body += self.buffer[:size]
                self.buffer = self.buffer[size + 2:]
            else:
                self.body += self.sock.recv(65536)
        block, _, self.body = self.body.partition(b"\n\n")
        return block.decode()

    def event(self) -> dict:
        """The next status event's data."""
        while True:
            block = self.frame()
            fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
            if fields.get("event") == "status":
                return json.loads(fields["data"])

    def close(self) -> None:
        self.sock.close()


def feed_batches(service, batches: int = BATCHES, rows: int = BATCH_ROWS):
    """Predict and send feedback with SeldonClient, ``rows`` rows a call; yields after each batch."""
    client = seldon_client(service, "rest")
    stream = phishing_stream(batches * rows)
    for _ in range(batches):
        batch = [next(stream) for _ in range(rows)]
        data = np.array([[x[f] for f in PHISHING_FEATURES] for x, _ in batch])
        prediction = client.predict(data=data, names=PHISHING_FEATURES)
        assert prediction.success, prediction.msg
        feedback = client.feedback(prediction_request=prediction.request, prediction_response=prediction.response,
                                   reward=1.0, prediction_truth=truth([y for _, y in batch]))
        assert feedback.success, feedback.msg
        yield


# -- the stream over plain HTTP ---------------------------------------------------------------
def test_events_are_server_sent_events_carrying_the_status(served):
    events = Events(served.metrics)
    try:
        assert events.status == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        assert events.headers["cache-control"] == "no-cache"
        assert events.frame() == "retry: 2000"
        block = events.frame()
        lines = block.split("\n")
        assert [line.split(":")[0] for line in lines] == ["id", "event", "data"], block
        first = json.loads(lines[2][len("data: "):])
        assert isinstance(first["time"], float) and first["service_type"] == "MODEL"
        assert first["status"]["metrics"] == served.status()["metrics"]
        assert first["status"]["replica"]["position"] == 0
        for _ in feed_batches(served, batches=1, rows=10):
            pass
        status = served.status()
        while True:  # the event of the learned position arrives (the read is bounded by the socket timeout)
            event = events.event()
            if event["status"]["replica"]["position"] == status["replica"]["position"]:
                break
        assert event["sequence"] > first["sequence"] and event["time"] >= first["time"]
        assert event["status"]["metrics"] == status["metrics"]
        assert event["status"]["metrics"]["learned"] == 10.0
    finally:
        events.close()


def test_streams_are_capped_and_a_client_that_leaves_frees_its_stream(capped):
    streams = [Events(capped.metrics) for _ in range(MAX_STREAMS)]
    try:
        for stream in streams:
            assert stream.status == 200 and stream.event()["status"]["metrics"]["learned"] == 0.0
        refused = requests.get(f"{live_url(capped)}/events", timeout=10)
        assert refused.status_code == 503, refused.text
        assert f"at most {MAX_STREAMS} streams" in refused.json()["status"]["info"]
        assert refused.headers["retry-after"] == "5"
        # Predictions go on while every stream is open.
        x, _ = next(phishing_stream(1))
        assert capped.predict({"data": {"names": PHISHING_FEATURES, "ndarray": [[x[f] for f in PHISHING_FEATURES]]}}
                              ).status_code == 200
        streams.pop().close()

        def another_is_served() -> bool:
            probe = Events(capped.metrics)
            if probe.status == 200:
                streams.append(probe)
                return True
            probe.close()
            return False

        wait_until(another_is_served, 20, "the stream of the client that left to be freed")
        assert streams[-1].event()["status"]["metrics"]["learned"] == 0.0
    finally:
        for stream in streams:
            stream.close()


def test_the_page_is_one_self_contained_file(served):
    page = requests.get(live_url(served), timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    html = page.text
    assert "<script>" in html and "/events" in html
    # Nothing loaded from elsewhere: no script, style sheet, image or font by address.
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html), "the page loads a file"
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", html)
    assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/", html), "the page names an address"
    assert requests.post(live_url(served), timeout=10).status_code == 405
    assert requests.get(f"http://127.0.0.1:{served.metrics}/metrics", timeout=10).status_code == 200


def test_the_page_is_package_data():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "page.html" in project["tool"]["setuptools"]["package-data"]["model_wrappers.live"]
    from model_wrappers.live import page

    assert page().startswith(b"<!DOCTYPE html>")


# -- the page in headless Chromium ------------------------------------------------------------
@pytest.fixture
def browser(tmp_path):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    found = os.path.exists(chromium) and os.path.exists(driver_path)
    require("Chromium and its driver", found, "bash scripts/setup-system.sh (Debian's chromium and chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require("selenium", False, "pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path, log_output=str(tmp_path / "chromedriver.log")),
                              options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shown(driver, node: str, metric: str) -> float | None:
    """The value the page shows for ``metric`` of ``node`` (from the element's data-value)."""
    value = driver.execute_script(
        "const e = document.querySelector(`section[data-node=\"${arguments[0]}\"] .figure [data-metric=\"${arguments[1]}\"]`);"
        "return e ? e.getAttribute('data-value') : null;", node, metric)
    return float(value) if value else None


def count(driver, selector: str) -> int:
    """How many elements match ``selector``, read in one go (the page redraws on every event)."""
    return driver.execute_script("return document.querySelectorAll(arguments[0]).length;", selector)


def attributes(driver, selector: str, *names: str) -> list[list[str]]:
    """``names`` attributes of every element matching ``selector``, read in one go."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => arguments[1].map(n => e.getAttribute(n)));",
        selector, list(names))


def screenshot(driver, tmp_path: Path, name: str, env: str, width: int = 1400) -> None:
    path = tmp_path / name
    height = driver.execute_script("document.documentElement.style.overflow = 'hidden';"
                                   "return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(3000, height + 120))  # the whole page, not the first screen
    driver.save_screenshot(str(path))
    print(f"screenshot of the live view: {path}")
    target = os.environ.get(env)
    if target:
        target_path = Path(target) if Path(target).is_absolute() else REPO / target
        target_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target_path)
        print(f"screenshot written to {target_path}")


def assert_drift_and_challengers_shown(driver, node: str, status: dict) -> None:
    """A model whose status carries ``drift`` or ``challengers`` has them on the page."""
    drift = status.get("drift")
    if drift is not None:
        assert shown(driver, node, "drift_detections") == drift["detections"]
        assert shown(driver, node, "drift_warnings") == drift["warnings"]
        marks = count(driver, f'section[data-node="{node}"] [data-chart="metrics"] line[data-mark]')
        assert marks == len([e for e in drift["events"] if isinstance(e.get("learned"), (int, float))])
    challengers = status.get("challengers")
    if challengers is not None:
        rows = attributes(driver, f'section[data-node="{node}"] table.challengers tr[data-candidate]', "data-candidate")
        assert {r[0] for r in rows} == {challengers["champion"], *challengers["candidates"]}


def test_the_page_shows_what_the_component_learns(served, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(live_url(served))
    node = "RiverModel"  # the class's name: no PREDICTIVE_UNIT_ID outside a graph
    wait_until(lambda: shown(browser, node, "learned") is not None, 30, "the page's first figures")
    assert shown(browser, node, "learned") == 0.0
    assert browser.find_element(By.ID, "connection").get_attribute("data-connection") == "open"
    seen = []
    for _ in feed_batches(served):
        status = served.status()
        wait_until(lambda: shown(browser, node, "learned") == status["metrics"]["learned"], 30,
                   f"the page to show {status['metrics']['learned']} rows learned")
        on_page = {k: shown(browser, node, k) for k in status["metrics"]}
        assert on_page == status["metrics"], (on_page, status["metrics"])
        assert shown(browser, node, "position") == status["replica"]["position"]
        seen.append(on_page)
    assert_drift_and_challengers_shown(browser, node, status)
    assert [s["learned"] for s in seen] == [BATCH_ROWS * (i + 1) for i in range(BATCHES)]
    assert len({s["accuracy"] for s in seen}) > 1  # the accuracy shown moved as the model learned
    # The chart of progressive metrics draws one line per metric, over every batch.
    paths = attributes(browser, '[data-chart="metrics"] path[data-series="accuracy"]', "d")
    assert len(paths) == 1 and paths[0][0].count("L") >= BATCHES - 1
    screenshot(browser, tmp_path, "live-view.png", "SELDON_RIVER_PLAIN_SCREENSHOT", width=760)


def test_the_page_marks_drift_and_shows_the_challenger(services, browser, tmp_path):
    from drift_streams import FEATURES, agrawal_change, export_champion_and_challenger

    folder = export_champion_and_challenger(tmp_path / "nb")
    node = "classifier"
    service = services.start("model_wrappers.RiverModel", "MODEL", {
        "model_uri": str(folder), "state_uri": f"sqlite:///{tmp_path}/drift.db", "drift_reaction": "challenger",
        "challengers": "challengers/hat", "promote_after": 0}, tmp_path, name=node, server="seldon-river",
        env={"PREDICTIVE_UNIT_ID": node})
    browser.get(live_url(service))
    wait_until(lambda: shown(browser, node, "learned") is not None, 30, "the page's first figures")
    client = seldon_client(service, "rest")
    rows = agrawal_change(DRIFT_ROWS)
    for i in range(0, len(rows), DRIFT_BATCH):
        batch = rows[i:i + DRIFT_BATCH]
        prediction = client.predict(data=np.array([[x[f] for f in FEATURES] for x, _ in batch]), names=FEATURES)
        assert prediction.success, prediction.msg
        feedback = client.feedback(prediction_request=prediction.request, prediction_response=prediction.response,
                                   reward=1.0, prediction_truth=truth([y for _, y in batch]))
        assert feedback.success, feedback.msg
    status = service.status()
    assert status["drift"]["detections"] >= 1 and status["challengers"]["candidates"], status
    wait_until(lambda: shown(browser, node, "learned") == status["metrics"]["learned"] == DRIFT_ROWS, 30,
               "the page to show every row learned")
    assert {k: shown(browser, node, k) for k in status["metrics"]} == status["metrics"]
    assert_drift_and_challengers_shown(browser, node, status)
    kinds = {e["kind"] for e in status["drift"]["events"]}
    assert "drift" in kinds and {m[0] for m in attributes(browser, "line[data-mark]", "data-mark")} == kinds
    screenshot(browser, tmp_path, "live-view-drift.png", "SELDON_RIVER_SCREENSHOT", width=900)


# -- seldon-river run: every node on the gateway ----------------------------------------------
def test_run_serves_the_live_view_of_every_node(runs, tmp_path, browser):
    from selenium.webdriver.common.by import By

    manifest = MANIFESTS / "full-graph.yaml"
    export_models(manifest, tmp_path / "models")
    run = runs.start(manifest, tmp_path, env={"SELDON_RIVER_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # The banner comes right after the gateway answers /ready.
    wait_until(lambda: f"live  {run.url}/live" in run.output(), 30, "the live view's URL in the banner")
    nodes = sorted(run.info["components"])
    # /live is still the orchestrator's probe for whatever does not ask for a page.
    assert requests.get(f"{run.url}/live", timeout=10).json() == {"status": "alive"}
    refused = requests.get(f"{run.url}/live/events", timeout=10)
    assert refused.status_code == 401 and "token" in refused.json()["status"]["info"]
    events = Events(run.port, headers=auth)
    try:
        assert events.status == 200
        event = events.event()
        assert event["deployment"] == "river-full-graph" and sorted(event["nodes"]) == nodes
        assert all("status" in entry and "error" not in entry for entry in event["nodes"].values()), event
    finally:
        events.close()

    browser.get(f"{run.url}/live#token={TOKEN}")
    models = [n for n in nodes if "learned" in event["nodes"][n]["status"]["metrics"]]
    assert len(models) == 2, models
    wait_until(lambda: all(shown(browser, n, "learned") is not None for n in models), 60, "every node's figures")
    on_page = sorted(e.get_attribute("data-node") for e in browser.find_elements(By.CSS_SELECTOR, "section.node"))
    assert on_page == nodes
    client = run.client("ambassador", "rest")
    stream = phishing_stream(BATCHES * 10)
    for _ in range(BATCHES * 10):
        x, y = next(stream)
        prediction = client.predict(data=np.array([[x[f] for f in PHISHING_FEATURES]]), names=PHISHING_FEATURES,
                                    headers=auth)
        assert prediction.success, prediction.msg
        # SeldonClient's feedback sends no token over REST: the same Feedback, sent with one.
        feedback = requests.post(f"{run.url}/api/v1.0/feedback", headers=auth, timeout=30, json={
            "request": as_dict(prediction.request), "response": as_dict(prediction.response), "reward": 1.0,
            "truth": {"data": {"ndarray": [[y]]}}})
        assert feedback.status_code == 200, feedback.text
    statuses = {n: requests.get(f"{run.url}/api/v1.0/status/{n}", headers=auth, timeout=10).json()["jsonData"]
                for n in nodes}
    assert sum(statuses[n]["metrics"]["learned"] for n in models) == BATCHES * 10
    for n in models:
        wait_until(lambda: shown(browser, n, "learned") == statuses[n]["metrics"]["learned"], 30,
                   f"the page to show what {n} learned")
    router = next(n for n in nodes if "arms" in statuses[n])
    expected = {str(a["arm"]): a["pulls"] for a in statuses[router]["arms"]}

    def pulls() -> dict:
        rows = browser.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(tr => [tr.getAttribute('data-arm'),"
            " tr.querySelector('[data-field=\"pulls\"]').getAttribute('data-value')]);",
            f'[data-node="{router}"] tr[data-arm]')
        return {arm: float(value) for arm, value in rows}

    wait_until(lambda: pulls() == expected, 30, f"the page to show the router's arms {expected}")
    detector = next(n for n in nodes if "outlier_rate" in statuses[n]["metrics"])
    assert count(browser, f'[data-node="{detector}"] [data-chart="outliers"] path') == 1
    screenshot(browser, tmp_path, "live-view-graph.png", "SELDON_RIVER_GRAPH_SCREENSHOT")

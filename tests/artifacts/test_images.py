"""The container images scripts/docker.sh builds, run for real by the engine scripts/docker.sh up
starts (DOCKER_HOST), driven with SeldonClient over REST and gRPC.

Containers run as a pod of manifests/ would: uid 8888, read-only root filesystem with a tmpfs
/tmp, no capabilities, the model folder mounted read-only at /mnt/models and a volume at
/var/lib/seldon-river for the learned state. They use the host network, which in the test
network namespace is loopback only, with ports picked free on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import types
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests

from support import (
    PHISHING_FEATURES,
    as_dict,
    free_port,
    phishing_stream,
    require,
    seldon_client,
    truth,
)

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 120.0
STATE_DIR = "/var/lib/seldon-river"
X = dict(next(phishing_stream(1))[0])
ROW = [X[f] for f in PHISHING_FEATURES]


def docker(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    require("a Docker engine (DOCKER_HOST)", bool(os.environ.get("DOCKER_HOST")) and shutil.which("docker") is not None,
            "run the tests through scripts/test.sh, whose scripts/docker.sh up starts one")
    names = dict(
        line.split("=", 1)
        for line in subprocess.run(["bash", str(REPO / "scripts" / "docker.sh"), "names"],
                                   capture_output=True, text=True, check=True).stdout.split()
    )
    found = {
        "image": os.environ.get("SELDON_RIVER_IMAGE") or names["IMAGE"],
        "s2i": os.environ.get("SELDON_RIVER_S2I_IMAGE") or names["S2I_IMAGE"],
        "builder": os.environ.get("SELDON_RIVER_S2I_BUILDER_IMAGE") or names["BUILDER_IMAGE"],
    }
    for image in found.values():
        missing = docker("image", "inspect", image, check=False)
        assert missing.returncode == 0, f"image {image} is not in the engine: run `bash scripts/docker.sh build` first"
    return found


# Run inside the image: a model folder is written by the river that will serve it.
EXPORT = """
import sys
from river import linear_model, preprocessing
from model_wrappers.artifact import export_model
export_model(preprocessing.StandardScaler() | linear_model.LogisticRegression(), sys.argv[1], task="classifier",
             features=sys.argv[2].split(","), classes=[True, False], name="phishing")
"""


def model_folder(path: Path, image: str) -> Path:
    """A phishing classifier folder exported inside ``image``, readable by the containers' uid 8888."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o777)
    docker("run", "--rm", "--network", "none", "--user", "8888", "--volume", f"{path.parent}:/out",
           "--entrypoint", "python", image, "-c", EXPORT, f"/out/{path.name}", ",".join(PHISHING_FEATURES))
    for p in [path, *path.rglob("*")]:
        assert p.stat().st_uid == 8888 or p.stat().st_mode & 0o004, p
    return path


class Container:
    """One component container, started detached, ready when REST and gRPC both answer."""

    def __init__(self, image: str, *, model: Path | None = None, volume: str | None = None,
                 env: dict[str, str] | None = None, parameters: list[dict] | None = None, unit: str = "model"):
        self.image = image
        self.name = f"seldon-river-test-{uuid.uuid4().hex[:10]}"
        self.http, self.grpc, self.metrics = free_port(), free_port(), free_port()
        self.model, self.volume, self.unit = model, volume, unit
        self.env = dict(env or {})
        if parameters is not None:
            self.env["PREDICTIVE_UNIT_PARAMETERS"] = json.dumps(parameters)

    def start(self) -> "Container":
        args = [
            "run", "--detach", "--name", self.name, "--label", "seldon-river-test=1", "--network", "host",
            # What the manifests' securityContext asks of a pod.
            "--user", "8888", "--read-only", "--tmpfs", "/tmp:rw,mode=1777", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--env", f"PREDICTIVE_UNIT_HTTP_SERVICE_PORT={self.http}",
            "--env", f"PREDICTIVE_UNIT_GRPC_SERVICE_PORT={self.grpc}",
            "--env", f"PREDICTIVE_UNIT_METRICS_SERVICE_PORT={self.metrics}",
            "--env", f"PREDICTIVE_UNIT_ID={self.unit}",
        ]
        for key, value in self.env.items():
            args += ["--env", f"{key}={value}"]
        if self.model is not None:
            args += ["--volume", f"{self.model}:/mnt/models:ro"]
        if self.volume is not None:
            args += ["--volume", f"{self.volume}:{STATE_DIR}"]
        docker(*args, self.image)
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"container {self.name} ({self.image}) not ready after {READY_TIMEOUT:.0f} s:\n"
                                     f"{self.logs()}")
            time.sleep(0.5)
        return self

    def _ready(self) -> bool:
        import grpc

        state = docker("inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()
        if state != "running":
            raise AssertionError(f"container {self.name} ({self.image}) is {state} before it was ready:\n{self.logs()}")
        try:
            if requests.get(f"http://127.0.0.1:{self.http}/health/ping", timeout=1).status_code != 200:
                return False
        except requests.RequestException:
            return False
        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc}")
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
            return True
        except grpc.FutureTimeoutError:
            return False
        finally:
            channel.close()

    def logs(self) -> str:
        done = docker("logs", "--tail", "80", self.name, check=False)
        return (done.stdout + done.stderr)[-6000:]

    def stop(self) -> None:
        docker("stop", "--time", "20", self.name, check=False)

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.name, check=False)

    def client(self, transport: str):
        return seldon_client(types.SimpleNamespace(http=self.http, grpc=self.grpc), transport)

    def status(self) -> dict:
        return requests.get(f"http://127.0.0.1:{self.http}/health/status", timeout=10).json()["jsonData"]


@pytest.fixture
def run(images):
    """Starts containers (and makes volumes) that are removed when the test ends."""
    started: list[Container] = []
    volumes: list[str] = []

    class Runner:
        def volume(self) -> str:
            name = f"seldon-river-test-{uuid.uuid4().hex[:10]}"
            docker("volume", "create", "--label", "seldon-river-test=1", name)
            volumes.append(name)
            return name

        def container(self, image: str, **kwargs) -> Container:
            container = Container(image, **kwargs)
            started.append(container)
            return container.start()

    yield Runner()
    for container in started:
        container.remove()
    for volume in volumes:
        docker("volume", "rm", "--force", volume, check=False)


def p_true(message) -> float:
    """P(True) of the first row, whichever payload type the reply uses."""
    data = as_dict(message)["data"]
    values = data["ndarray"] if "ndarray" in data else data["tensor"]["values"]
    row = values[0] if isinstance(values[0], list) else values
    return row[data["names"].index("True")]


def test_image_runs_as_non_root_without_compilers_or_build_settings(images):
    config = json.loads(docker("image", "inspect", images["image"]).stdout)[0]["Config"]
    assert config["User"] == "8888"
    assert config["Cmd"] == ["/usr/libexec/s2i/run"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["MODEL_NAME"] == "model_wrappers.RiverModel" and env["SERVICE_TYPE"] == "MODEL"
    assert env["SELDON_RIVER_STATE_URI"] == f"sqlite:///{STATE_DIR}/state.db"
    script = (
        "id -u; "
        "for tool in gcc cc c++ g++ make ld; do command -v $tool && echo compiler:$tool; done; "
        "test -e /tmp/build-env && echo leaked:/tmp/build-env; "
        f"test -w {STATE_DIR} && echo state-writable; "
        "python -c 'import importlib.util as u, numpy, river; print(\"river\", river.__version__, \"numpy\", "
        "numpy.__version__, \"seldon_core\", u.find_spec(\"seldon_core\") is not None)'; "
        "python -c 'import model_wrappers; print(model_wrappers.__file__)'"
    )
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", images["image"], "-c", script).stdout
    lines = out.split()
    assert lines[0] == "8888", f"the image runs as uid {lines[0]}, expected 8888"
    assert not [line for line in lines if line.startswith(("compiler:", "leaked:"))], out
    assert "state-writable" in lines, f"{STATE_DIR} is not writable by the image's user"
    # Today's river and numpy 2, served by the project's server without Seldon's wrapper.
    versions = dict(zip(lines[-7:-1:2], lines[-6:-1:2]))
    assert versions["river"].startswith("0.26.") and versions["numpy"].startswith("2."), out
    assert versions["seldon_core"] == "False", out
    assert lines[-1].startswith("/opt/seldon-river/lib/python3.11/site-packages/model_wrappers/"), (
        f"the package should be installed from its wheel into the venv, found at {lines[-1]}"
    )


def test_model_learns_over_rest_and_grpc_and_keeps_it_across_a_restart(images, run, tmp_path):
    model = model_folder(tmp_path / "model", images["image"])
    volume = run.volume()
    first = run.container(images["image"], model=model, volume=volume)
    x = np.array([ROW])

    rest, grpc_ = first.client("rest"), first.client("grpc")
    before = rest.predict(data=x, names=PHISHING_FEATURES)
    assert before.success, before.msg
    p_before = p_true(before.response)
    for name, client in (("rest", rest), ("grpc", grpc_)):
        for i in range(5):
            # Ten feedbacks about one prediction: each names itself, or the log learns it once.
            response = type(before.response)()
            response.CopyFrom(before.response)
            response.meta.tags["seldon_river_feedback_id"].string_value = f"{name}-{i}"
            fb = client.feedback(prediction_request=before.request, prediction_response=response,
                                 reward=0.0, prediction_truth=truth([True]))
            assert fb.success, fb.msg
    learned = grpc_.predict(data=x, names=PHISHING_FEATURES)
    assert learned.success, learned.msg
    p_learned = p_true(learned.response)
    assert p_learned > p_before, f"ten feedbacks with truth True left P(True) at {p_learned} (was {p_before})"
    assert p_true(rest.predict(data=x, names=PHISHING_FEATURES).response) == pytest.approx(p_learned)
    assert first.status()["metrics"]["learned"] == 10.0

    # A new container on the same volume: the state comes back, nothing else is kept.
    first.stop()
    first.remove()
    second = run.container(images["image"], model=model, volume=volume)
    for transport in ("rest", "grpc"):
        again = second.client(transport).predict(data=x, names=PHISHING_FEATURES)
        assert again.success, again.msg
        assert p_true(again.response) == pytest.approx(p_learned), (
            f"after the restart P(True) is {p_true(again.response)} over {transport}, before it was {p_learned}"
        )
    assert second.status()["metrics"]["learned"] == 10.0
    files = docker("run", "--rm", "--network", "none", "--volume", f"{volume}:/state", "--entrypoint", "ls",
                   images["image"], "/state").stdout.split()
    assert "state.db" in files, f"the state volume holds {files}"


def test_s2i_built_image_answers_a_predict(images, run, tmp_path):
    labels = json.loads(docker("image", "inspect", images["s2i"]).stdout)[0]["Config"]["Labels"] or {}
    assert labels.get("io.openshift.s2i.build.image", "").endswith(images["builder"]), (
        f"{images['s2i']} was not made by s2i from {images['builder']}: labels {labels}"
    )
    # Its parameters come from s2i/model/.s2i/environment (model_uri=/mnt/models, sqlite state).
    served = run.container(images["s2i"], model=model_folder(tmp_path / "model", images["image"]), volume=run.volume())
    for transport in ("rest", "grpc"):
        reply = served.client(transport).predict(data=np.array([ROW]), names=PHISHING_FEATURES)
        assert reply.success, reply.msg
        assert set(as_dict(reply.response)["data"]["names"]) == {"True", "False"}
        assert 0.0 <= p_true(reply.response) <= 1.0


def test_the_same_image_runs_the_router(images, run):
    from seldon_core.seldon_client import SeldonClient

    router = run.container(
        images["image"], volume=run.volume(), unit="router",
        env={"MODEL_NAME": "model_wrappers.BanditRouter", "SERVICE_TYPE": "ROUTER"},
        parameters=[{"name": "n_arms", "type": "INT", "value": "2"}, {"name": "seed", "type": "INT", "value": "7"}],
    )
    for transport, port in (("rest", router.http), ("grpc", router.grpc)):
        client = SeldonClient(microservice_endpoint=f"127.0.0.1:{port}", transport=transport)
        routed = client.microservice(method="route", data=np.array([ROW]))
        assert routed.success, routed.msg
        arm = as_dict(routed.response)["data"]
        values = arm.get("ndarray") or arm.get("tensor", {}).get("values")
        assert np.ravel(values)[0] in (0, 1), f"route answered {arm}, expected arm 0 or 1"


def test_the_same_image_runs_the_outlier_detector(images, run):
    from seldon_core.seldon_client import SeldonClient

    detector = run.container(
        images["image"], volume=run.volume(), unit="outlier-detector",
        env={"MODEL_NAME": "model_wrappers.OutlierDetector", "SERVICE_TYPE": "TRANSFORMER"},
        parameters=[{"name": "seed", "type": "INT", "value": "7"}],
    )
    for transport, port in (("rest", detector.http), ("grpc", detector.grpc)):
        client = SeldonClient(microservice_endpoint=f"127.0.0.1:{port}", transport=transport)
        out = client.microservice(method="transform-input", data=np.array([ROW]), names=PHISHING_FEATURES)
        assert out.success, out.msg

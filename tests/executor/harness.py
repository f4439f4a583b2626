"""A manifest's graph behind Seldon Core v1.17.1's real service orchestrator (the executor)."""

from __future__ import annotations

import copy
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from model_wrappers.local.manifest import read_deployment
from model_wrappers.manifest_files import is_seldon_deployment, read_documents
from support import REPO, free_port, require, wait_until

def executor_binary(workdir: Path) -> Path:
    """A writable, executable copy of the prebuilt executor (``SELDON_EXECUTOR`` overrides)."""
    if str(REPO) not in sys.path:  # benchmarks/ sits beside tests/, outside the installed package
        sys.path.insert(0, str(REPO))
    from benchmarks.servers import executor_binary as prebuilt

    source = prebuilt()
    require("Seldon's executor", source is not None,
            "set SELDON_EXECUTOR or provide ../shared/tools/seldon-executor/executor")
    target = workdir / "executor"
    shutil.copyfile(source, target)
    target.chmod(target.stat().st_mode | stat.S_IXUSR)
    return target


def graph_file(manifest: Path, endpoints: dict, out: Path) -> Path:
    """The manifest's SeldonDeployment with each graph node's endpoint filled in."""
    sdep = copy.deepcopy(next(d for d in read_documents(manifest) if is_seldon_deployment(d)))

    def fill(node):
        http, grpc_port = endpoints[node["name"]]
        node["endpoint"] = {"service_host": "127.0.0.1", "httpPort": http, "grpcPort": grpc_port,
                            "type": "REST"}
        for child in node.get("children") or []:
            fill(child)

    for predictor in sdep["spec"]["predictors"]:
        fill(predictor["graph"])
    out.write_text(yaml.safe_dump(sdep))
    return out


def start_executor(manifest: Path, endpoints: dict, workdir: Path) -> tuple[subprocess.Popen, int, int]:
    """Run the executor for the manifest's predictor; returns the process and its ports."""
    deployment = read_deployment(manifest)
    http, grpc_port = free_port(), free_port()
    sdep = graph_file(manifest, endpoints, workdir / "sdep.yaml")
    log = workdir / "executor.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(executor_binary(workdir)), "--sdep", deployment.name, "--namespace", "default",
             "--predictor", deployment.predictor.name, "--file", str(sdep),
             "--http_port", str(http), "--grpc_port", str(grpc_port),
             "--protocol", "seldon", "--transport", "rest"],
            cwd=workdir, env={**os.environ, **deployment.predictor.orchestrator_env},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: requests.get(f"http://127.0.0.1:{http}/ready", timeout=1).status_code < 500,
               60, "executor", proc, log)
    return proc, http, grpc_port


TYPED = {"INT": int, "FLOAT": float, "DOUBLE": float, "BOOL": lambda v: str(v).lower() == "true", "STRING": str}


def node_parameters(node, state_uri: str, model_folder: Path | None) -> dict:
    """The node's parameters as the operator passes them, with state and model made local."""
    values = {p["name"]: TYPED[p.get("type", "STRING")](p["value"]) for p in node.parameters}
    if "state_uri" in values:
        values["state_uri"] = state_uri
    if model_folder is not None:
        values["model_uri"] = str(model_folder)
    return values


def start_components(start, deployment, state_uri: str, models: dict, workdir: Path) -> dict:
    """Start every graph node through ``start`` (the ``services`` fixture pattern).

    ``models`` maps a MODEL node's name to the folder it serves. Returns node name -> service.
    """
    from model_wrappers.local.plan import _class_of

    from support import seldon_parameters

    started = {}
    for node in deployment.predictor.graph.walk():
        class_path, service_type, _ = _class_of(node, deployment.predictor.containers.get(node.name))
        parameters = node_parameters(node, state_uri, models.get(node.name))
        env = {"PREDICTIVE_UNIT_ID": node.name, "PREDICTIVE_UNIT_PARAMETERS": seldon_parameters(parameters)}
        started[node.name] = start(class_path, service_type, parameters, workdir, env=env, name=node.name)
    return started


def stop(proc: subprocess.Popen) -> None:
    """Stop the executor's process group."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def run_graph(start, manifest: Path, state_uri: str, models: dict, workdir: Path):
    """Components and executor for ``manifest``; yields a namespace, stops the executor after."""
    import types

    deployment = read_deployment(manifest)
    components = start_components(start, deployment, state_uri, models, workdir)
    proc, http, grpc_port = start_executor(manifest, {n: (s.http, s.grpc) for n, s in components.items()}, workdir)
    try:
        yield types.SimpleNamespace(components=components, http=http, grpc=grpc_port, work=workdir)
    finally:
        stop(proc)


def client(graph, transport: str):
    """SeldonClient with the executor as its gateway (paths /api/v1.0/..., gRPC ``Seldon``)."""
    import functools
    import types

    from seldon_core.seldon_client import SeldonClient

    port = graph.http if transport == "rest" else graph.grpc
    c = SeldonClient(gateway="seldon", transport=transport, gateway_endpoint=f"127.0.0.1:{port}",
                     deployment_name="local", client_return_type="proto")
    return types.SimpleNamespace(predict=functools.partial(c.predict, gateway_prefix=""),
                                 feedback=functools.partial(c.feedback, gateway_prefix=""))


def predict_row(graph, transport: str) -> tuple:
    """One Phishing row predicted through the executor with SeldonClient: (client, x, y, reply)."""
    import numpy as np

    from support import phishing_stream

    (x, y), = list(phishing_stream(1))
    names = sorted(x)
    c = client(graph, transport)
    reply = c.predict(data=np.array([[x[n] for n in names]], dtype=object), names=names)
    assert reply.success, reply.msg
    return c, x, y, reply


def label_only_feedback(graph, x: dict, y) -> tuple:
    """REST predict, then a feedback carrying only the truth and the reply's puid (header and meta)."""
    names = sorted(x)
    url = f"http://127.0.0.1:{graph.http}/api/v1.0"
    reply = requests.post(f"{url}/predictions", json={"data": {"names": names, "ndarray": [[x[n] for n in names]]}},
                          timeout=30)
    puid = reply.headers.get("Seldon-Puid")
    body = {"truth": {"data": {"ndarray": [[y]]}}, "response": {"meta": {"puid": puid}}}
    fb = requests.post(f"{url}/feedback", json=body, headers={"Seldon-Puid": puid}, timeout=30)
    return reply, fb

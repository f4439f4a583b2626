"""Serving benchmarks: ``python -m benchmarks.run`` (what ``make bench`` runs).

One river model (``StandardScaler | LogisticRegression`` after one pass over river's bundled
Phishing dataset, one row per request unless said otherwise) is served by:

- ``stock``: Seldon's stock wrapper around a minimal river class
  (:mod:`benchmarks.baselines.stock_river`), 1 and 2 workers;
- ``mlserver``: MLServer 1.7.1 with a minimal river runtime, one process, in its own venv;
- ``seldon-river``: ``model_wrappers.RiverModel`` with a SQLite learning log on the project's own
  server (``seldon-river-microservice``), 1 and 2 workers, run from the project installed without
  the seldon-core extra (``--river-venv``, see :func:`benchmarks.venvs.ensure_project_server`);
- ``floor``: a component that does no work (:mod:`benchmarks.baselines.floor`), 1 and 2 workers:
  what ``seldon-core-microservice`` itself costs, so what no component it serves can beat;
  ``floor-river``: the same component on the project's server, 1 worker;
- ``executor+...`` (``--behind-executor``): Seldon Core v1.17.1's own service orchestrator (the
  prebuilt executor) in front of a further stock, seldon-river and floor-river server, 1 worker
  each, called through its external API as a cluster's clients call it.

Sections (``--sections``, comma-separated; default ``serve,ceiling,state``):

- ``serve``: REST predict (1 and 100 rows), gRPC predict and REST feedback (at ``--connections``
  and at 16 connections, ``feedback-16``: every feedback durable before its reply), with wrk and an
  asyncio gRPC client at a fixed concurrency; servers alternate round-robin over ``--rounds``
  rounds of ``--duration`` seconds each, and the median of the rounds is reported;
- ``ceiling``: river in-process, measured once per round between the servers' turns;
- ``state``: learning-log figures (:mod:`benchmarks.state`);
- ``keyed``: :mod:`benchmarks.keyed` when present (slow; also ``--keyed``).

Everything listens on 127.0.0.1 inside a loopback-only network namespace: the command
re-executes itself under ``scripts/in-netns.sh`` unless ``SELDON_RIVER_IN_NETNS=1``.
Writes ``benchmarks/results.json`` and prints a table. Figures are load-generator-bound
measurements on a shared machine: compare the ratios, which every server saw under the same noise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results.json"
SECTIONS = ("serve", "ceiling", "state", "keyed")
DEFAULT_SECTIONS = ("serve", "ceiling", "state")
SERVER_LABELS = ("stock", "mlserver", "seldon-river", "floor", "floor-river")
BEHIND_EXECUTOR = ("stock", "seldon-river", "floor-river")
SCENARIOS = {
    # name: (transport, what, rows per request)
    "rest-1": ("rest", "predict", 1),
    "rest-100": ("rest", "predict", 100),
    "grpc-1": ("grpc", "predict", 1),
    "feedback": ("rest", "feedback", 1),
    "feedback-16": ("rest", "feedback", 1),
}
# Scenarios measured at their own concurrency rather than --connections.
CONNECTIONS = {"feedback-16": 16}
# Targets (reported, never asserted): REST and gRPC predict and feedback (also durable feedback
# at 16 connections) >= 3x the stock wrapper per worker, directly and behind Seldon's executor;
# REST predict >= 1.5x MLServer; ~linear 1 -> 2 workers; a 100-row batch at least half the
# in-process rows/s.
TARGET_VS_STOCK = 3.0
TARGET_VS_MLSERVER = 1.5
TARGET_SCALING = 1.8
TARGET_BATCH_CEILING = 0.5


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default %(default)s)")
    p.add_argument("--keyed", action="store_true", help="add the keyed section (benchmarks.keyed)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds; medians are reported (default %(default)s)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds of unmeasured load per server and scenario before round 1 (0: none)")
    p.add_argument("--connections", type=int, default=4, help="wrk connections (default %(default)s)")
    p.add_argument("--grpc-concurrency", type=int, default=4, help="gRPC calls in flight (default %(default)s)")
    p.add_argument("--servers", default=",".join(SERVER_LABELS), help="subset of %(default)s")
    p.add_argument("--behind-executor", default=",".join(BEHIND_EXECUTOR),
                   help="servers also measured behind Seldon's executor, 1 worker each ('' for none; default %(default)s)")
    p.add_argument("--workers", default="1,2", help="worker counts for servers that have workers (default %(default)s)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="subset of %(default)s")
    p.add_argument("--river-class", default="model_wrappers.RiverModel", help="class path served as seldon-river")
    p.add_argument("--river-venv", default="server",
                   help="where the project's server runs from: 'server' (default: the project installed without "
                        "the seldon-core extra, in a cached venv), 'this' (this interpreter) or a venv's folder")
    p.add_argument("--river-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the seldon-river servers (e.g. GUNICORN_THREADS=4); repeatable")
    p.add_argument("--river-param", action="append", default=[], metavar="NAME=VALUE",
                   help="extra Seldon parameter for the seldon-river servers; repeatable")
    p.add_argument("--stock-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the stock-wrapper servers; repeatable")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL:NAME=VALUE,...",
                   help="also serve a seldon-river variant labelled LABEL with this extra environment "
                        "(e.g. 'threads:GUNICORN_THREADS=4', or PYTHONPATH=<a modified copy of the "
                        "package>:<repo>); the key 'class' sets its class path and keys 'param.NAME' add "
                        "Seldon parameters; repeatable")
    p.add_argument("--backends", default="sqlite,redis", help="learning-log backends of the state section")
    p.add_argument("--lag-samples", type=int, default=200, help="feedbacks in the lag measurement")
    p.add_argument("--restore-rows", type=int, default=5000,
                   help="rows the large model learns before its checkpoint (5000: ~7 MB)")
    p.add_argument("--restore-tail", type=int, default=500, help="logged events replayed after the checkpoint")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file (default benchmarks/results.json)")
    p.add_argument("--workdir", type=Path, default=None, help="keep model folders, logs and state here")
    args = p.parse_args(argv)
    args.sections = csv(args.sections) + (["keyed"] if args.keyed and "keyed" not in csv(args.sections) else [])
    args.servers = csv(args.servers)
    args.behind_executor = csv(args.behind_executor)
    args.workers = [int(w) for w in csv(args.workers)]
    args.scenarios = csv(args.scenarios)
    args.backends = tuple(csv(args.backends))
    args.variants = []
    for item in args.variant:
        label, _, spec = item.partition(":")
        env = pairs(csv(spec), f"--variant {label}")
        if not label or label in SERVER_LABELS:
            p.error(f"--variant needs a new LABEL before ':', got {item!r}")
        params = {k[len("param."):]: typed(env.pop(k)) for k in list(env) if k.startswith("param.")}
        args.variants.append((label, env.pop("class", None), env, params))
    for name, values, allowed in (("--sections", args.sections, SECTIONS), ("--servers", args.servers, SERVER_LABELS),
                                  ("--behind-executor", args.behind_executor, BEHIND_EXECUTOR),
                                  ("--scenarios", args.scenarios, tuple(SCENARIOS))):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            p.error(f"{name}: unknown {unknown}; expected a subset of {','.join(allowed)}")
    if args.duration < 1:
        p.error(f"--duration must be at least 1 s (wrk counts whole seconds), got {args.duration}")
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def pairs(items: list[str], what: str) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{what} needs NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def typed(value: str):
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if isinstance(parsed, (bool, int, float, str)) else value


# -- machine --------------------------------------------------------------------------------
def machine_info(mlserver_venv: Path | None = None, river_venv: Path | None = None) -> dict:
    import dill
    import grpc
    import numpy
    import river
    from google.protobuf import __version__ as protobuf_version
    from google.protobuf.internal import api_implementation

    from . import load

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        seldon = importlib.metadata.version("seldon-core")
    except importlib.metadata.PackageNotFoundError:
        seldon = None
    versions = {
        "python": platform.python_version(), "seldon-core": seldon, "river": river.__version__,
        "numpy": numpy.__version__, "dill": dill.__version__, "grpcio": grpc.__version__,
        "protobuf": f"{protobuf_version} ({api_implementation.Type()})", "wrk": load.wrk_version(),
        "sqlite": __import__("sqlite3").sqlite_version,
    }
    redis = shutil.which("redis-server")
    if redis:
        out = subprocess.run([redis, "--version"], capture_output=True, text=True)
        versions["redis-server"] = next((w[2:] for w in out.stdout.split() if w.startswith("v=")), None)
    if mlserver_venv is not None:
        from .venvs import version_of

        versions["mlserver"] = version_of(mlserver_venv, "mlserver")
    if river_venv is not None:
        versions["seldon-river server"] = server_versions(river_venv)
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu_model": cpu,
        "kernel": platform.release(), "loadavg_start": list(os.getloadavg()),
        "mem_total_mb": _meminfo("MemTotal"), "versions": versions,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


SERVER_VERSIONS = r"""
import json, platform, importlib.metadata as m
from google.protobuf.internal import api_implementation
names = ("river", "numpy", "grpcio", "protobuf", "prometheus-client", "uvicorn", "uvloop")
found = {n: m.version(n) for n in names}
found["protobuf"] += f" ({api_implementation.Type()})"
print(json.dumps({"python": platform.python_version(), **found}))
"""


def server_versions(venv: Path) -> dict:
    """What the project's server runs on in ``venv`` (it differs from this interpreter's)."""
    out = subprocess.run([str(venv / "bin" / "python"), "-c", SERVER_VERSIONS], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-500:]}


def fsync_probe(folder: Path, count: int = 50) -> dict:
    """Latency of a small write + fdatasync where the learning logs live (it bounds durable feedback)."""
    path = folder / ".fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(count):
            began = time.perf_counter()
            os.write(fd, b"x" * 128)
            os.fdatasync(fd)
            times.append((time.perf_counter() - began) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return {"folder": str(folder), "p50_ms": round(times[len(times) // 2], 3),
            "p99_ms": round(times[int(0.99 * (len(times) - 1))], 3)}


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


# -- in-process ceiling ---------------------------------------------------------------------
def ceiling_once(model, rows: list[dict], labels: list, seconds: float) -> dict:
    """River alone, in this process: per-row predict, 100-row batches and learn_one."""
    import copy

    import pandas as pd

    share = max(seconds / 4, 0.05)

    def rate(step, unit_rows: int) -> float:
        done, began = 0, time.perf_counter()
        while True:
            step(done)
            done += 1
            elapsed = time.perf_counter() - began
            if elapsed >= share:
                return done * unit_rows / elapsed

    n = len(rows)
    per_row = rate(lambda i: model.predict_proba_one(rows[i % n]), 1)
    batch_dicts = [rows[(j * 100) % n:(j * 100) % n + 100] for j in range(max(1, n // 100))]
    batch_loop = rate(lambda i: [model.predict_proba_one(x) for x in batch_dicts[i % len(batch_dicts)]], 100)
    frames = [pd.DataFrame(b) for b in batch_dicts]
    try:
        batch_many = rate(lambda i: model.predict_proba_many(frames[i % len(frames)]), 100)
    except (AttributeError, NotImplementedError):
        batch_many = None
    learner = copy.deepcopy(model)
    learn = rate(lambda i: learner.learn_one(rows[i % n], labels[i % n]), 1)
    return {"predict_proba_one_us": 1e6 / per_row, "predict_rows_per_s": per_row,
            "batch100_loop_rows_per_s": batch_loop, "batch100_many_rows_per_s": batch_many,
            "batch100_rows_per_s": max(batch_loop, batch_many or 0.0), "learn_one_per_s": learn}


def median_ceiling(runs: list[dict]) -> dict:
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = round(statistics.median(values), 3 if key.endswith("_us") else 1) if values else None
    out["rounds"] = len(runs)
    return out


# -- serving --------------------------------------------------------------------------------
class Workload:
    """Model folder, rows and pre-encoded bodies for every server protocol and scenario."""

    def __init__(self, workdir: Path, mlserver_venv: Path | None, river_venv: Path | None = None):
        from . import servers

        self.data = servers.phishing()
        self.rows = [x for x, _ in self.data]
        self.labels = [y for _, y in self.data]
        self.model = servers.warmed_pipeline(self.data)
        self.folder = servers.export_phishing_model(workdir / "model", self.model)
        self.mlserver_venv = mlserver_venv
        self.river_venv = river_venv
        self._bodies: dict = {}

    def bodies(self, protocol: str, scenario: str) -> list[bytes]:
        from . import load

        key = (protocol, scenario)
        if key in self._bodies:
            return self._bodies[key]
        transport, what, size = SCENARIOS[scenario]
        batches = load.batches(self.rows, size)
        if what == "feedback":
            labels = load.batches(self.labels, size)  # type: ignore[arg-type]
            bodies = [json.dumps(load.seldon_feedback_json(b, y)).encode() for b, y in zip(batches, labels)]
        elif protocol == "seldon":
            bodies = ([json.dumps(load.seldon_json(b)).encode() for b in batches] if transport == "rest"
                      else [load.seldon_proto(b) for b in batches])
        elif transport == "rest":
            bodies = [json.dumps(load.v2_json(b)).encode() for b in batches]
        else:
            bodies = load.v2_protos(batches, self.mlserver_venv, "river")
        self._bodies[key] = bodies
        return bodies


def make_servers(args: argparse.Namespace, workdir: Path, work: Workload) -> list:
    from . import servers

    river_env, stock_env = pairs(args.river_env, "--river-env"), pairs(args.stock_env, "--stock-env")
    river_params = {k: typed(v) for k, v in pairs(args.river_param, "--river-param").items()}

    def one(label: str, workers: int, prefix: str = ""):
        name = f"{prefix}{label}-w{workers}"
        if label == "stock":
            return servers.SeldonServer(workdir, name, label, servers.STOCK_CLASS, {"model_uri": str(work.folder)},
                                        workers, stock_env)
        if label == "seldon-river":
            params = {"model_uri": str(work.folder), "state_uri": f"sqlite:///{workdir / f'{name}.db'}",
                      **river_params}
            return servers.SeldonServer(workdir, name, label, args.river_class, params, workers, river_env,
                                        server="seldon-river", venv=work.river_venv)
        if label == "floor":
            return servers.SeldonServer(workdir, name, label, servers.FLOOR_CLASS, {"fast_metrics": True}, workers, {})
        if label == "floor-river":
            return servers.SeldonServer(workdir, name, label, servers.FLOOR_CLASS, {}, workers, {},
                                        server="seldon-river", venv=work.river_venv)
        raise ValueError(f"unknown server {label!r}")

    made = []
    for workers in args.workers:
        made += [one(label, workers) for label in ("stock", "seldon-river", "floor") if label in args.servers]
        for label, class_path, env, extra in args.variants:
            params = {"model_uri": str(work.folder), "state_uri": f"sqlite:///{workdir / f'{label}-w{workers}.db'}",
                      **river_params, **extra}
            made.append(servers.SeldonServer(workdir, f"{label}-w{workers}", label, class_path or args.river_class,
                                              params, workers, {**river_env, **env}, server="seldon-river",
                                              venv=work.river_venv))
    if "floor-river" in args.servers:
        made.append(one("floor-river", 1))
    if "mlserver" in args.servers:
        made.append(servers.MLServer(workdir, "mlserver", work.folder, work.mlserver_venv))
    if args.behind_executor:
        binary = servers.executor_binary()
        if binary is None:
            log("no Seldon executor on this machine (SELDON_EXECUTOR): the rows behind it are left out")
        else:
            made += [servers.ExecutorFront(one(label, 1, "x-"), binary) for label in args.behind_executor]
    return made


def supports(server, scenario: str) -> bool:
    transport, what, _ = SCENARIOS[scenario]
    if what == "feedback":
        return (server.rest_feedback_path if transport == "rest" else server.grpc_feedback_method) is not None
    return True


def measure(server, scenario: str, work: Workload, args: argparse.Namespace, duration: float, start: int = 0) -> dict:
    from . import load

    transport, what, size = SCENARIOS[scenario]
    bodies = work.bodies(server.protocol, scenario)
    cpu_before = server.cpu_seconds()
    if transport == "rest":
        path = server.rest_feedback_path if what == "feedback" else server.rest_predict_path
        result = load.wrk(server.rest_url + path, bodies, duration, CONNECTIONS.get(scenario, args.connections),
                          rows_per_request=size,
                          start_index=start)
    else:
        method = server.grpc_feedback_method if what == "feedback" else server.grpc_predict_method
        result = load.grpc_load(server.grpc_target, method, bodies, duration, args.grpc_concurrency,
                                rows_per_request=size)
    used = server.cpu_seconds() - cpu_before
    result["server_cpu_ms_per_request"] = round(used * 1000 / result["requests"], 3) if result["requests"] else None
    return result


def run_serve(args: argparse.Namespace, workdir: Path, work: Workload, results: dict) -> None:
    from . import load

    with_ceiling = "ceiling" in args.sections
    started = []
    cells: dict[tuple[str, str], list[dict]] = {}
    ceilings = []
    try:
        for server in make_servers(args, workdir, work):
            log(f"starting {server.name}")
            started.append(server.start())
            log(f"  {server.name} ready in {server.started_in:.1f} s")
        results["serve"] = {"servers": [s.describe() for s in started], "cells": []}
        plan = [(s, sc) for sc in args.scenarios for s in started if supports(s, sc)]
        if args.warmup > 0:
            log(f"warm-up: {len(plan)} cells x {max(1, round(args.warmup))} s")
            for server, scenario in plan:
                measure(server, scenario, work, args, args.warmup)
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}")
            if with_ceiling:
                ceilings.append(ceiling_once(work.model, work.rows, work.labels, 1.0))
            for scenario in args.scenarios:
                # Rotate the order each round so no server always follows the same one.
                order = [s for s in started if supports(s, scenario)]
                order = order[r % len(order):] + order[:r % len(order)] if order else []
                for server in order:
                    result = measure(server, scenario, work, args, args.duration, start=r * 97)
                    result["round"] = r + 1
                    cells.setdefault((server.name, scenario), []).append(result)
                    log(f"  {server.name:<18} {scenario:<9} {result['rps']:>9.1f} req/s  p50 {result['p50_ms']} ms"
                        f"  p99 {result['p99_ms']} ms  errors {result['errors']}")
    finally:
        for server in started:
            server.stop()
    by_name = {s.name: s for s in started}
    for (name, scenario), runs in cells.items():
        server = by_name[name]
        median = load.median_of(runs)
        cpu = [r["server_cpu_ms_per_request"] for r in runs if r.get("server_cpu_ms_per_request") is not None]
        median["server_cpu_ms_per_request"] = round(statistics.median(cpu), 3) if cpu else None
        results["serve"]["cells"].append({
            "server": name, "label": server.label, "workers": server.workers, "scenario": scenario,
            "transport": SCENARIOS[scenario][0], "what": SCENARIOS[scenario][1],
            "rows_per_request": SCENARIOS[scenario][2], "median": median, "runs": runs,
        })
    if ceilings:
        results["ceiling"] = median_ceiling(ceilings)


def run_ceiling_alone(args: argparse.Namespace, work: Workload, results: dict) -> None:
    runs = []
    for r in range(args.rounds):
        runs.append(ceiling_once(work.model, work.rows, work.labels, 1.0))
    results["ceiling"] = median_ceiling(runs)


# -- ratios and targets ---------------------------------------------------------------------
def add_ratios(results: dict) -> None:
    serve = results.get("serve")
    if not serve:
        return
    ceiling = results.get("ceiling") or {}
    cells = serve["cells"]

    def find(label: str, scenario: str, workers: int | None = None):
        for c in cells:
            if c["label"] == label and c["scenario"] == scenario and (workers is None or c["workers"] == workers):
                return c
        return None

    for c in cells:
        rps = c["median"].get("rps") or 0.0
        # Behind the executor, servers are compared with the stock wrapper behind it too.
        front = "executor+" if c["label"].startswith("executor+") else ""
        stock = find(front + "stock", c["scenario"], c["workers"])
        mls = None if front else find("mlserver", c["scenario"])
        if c["what"] == "feedback":
            top = ceiling.get("learn_one_per_s")
        elif c["rows_per_request"] > 1:
            top = ceiling.get("batch100_rows_per_s")
        else:
            top = ceiling.get("predict_rows_per_s")
        cpu, stock_cpu = c["median"].get("server_cpu_ms_per_request"), (stock or {}).get("median", {}).get(
            "server_cpu_ms_per_request")
        c["ratios"] = {
            "vs_stock": round(rps / stock["median"]["rps"], 3) if stock and stock["median"].get("rps") else None,
            # Server CPU per request, stock's over this one's: less sensitive to a busy machine.
            "cpu_vs_stock": round(stock_cpu / cpu, 3) if cpu and stock_cpu else None,
            "vs_mlserver": round(rps / mls["median"]["rps"], 3) if mls and mls["median"].get("rps") else None,
            "vs_ceiling": round(c["median"]["rows_per_s"] / top, 4) if top else None,
        }
    results["targets"] = targets(cells, find, ceiling)


def targets(cells: list[dict], find, ceiling: dict) -> list[dict]:
    out = []

    def add(name: str, measured, threshold, detail: str, higher_than: bool = False, floor=None):
        met = None if measured is None else (measured > threshold if higher_than else measured >= threshold)
        row = {"target": name, "measured": None if measured is None else round(measured, 3),
               "threshold": threshold, "met": met, "detail": detail}
        if floor is not None:
            # The same figure for a component that does nothing: above it no component can go.
            row["floor"] = round(floor, 3)
            row["detail"] += f"; a component doing nothing: {floor:.2f}"
        out.append(row)

    def floor_ratio(scenario: str, base: float | None, workers: int | None = None):
        floor = find("floor", scenario, workers or min(c["workers"] for c in cells))
        return floor["median"]["rows_per_s"] / base if floor and base else None

    workers = sorted({c["workers"] for c in cells if c["label"] == "seldon-river"})
    against_stock = (("rest-1", "REST predict"), ("grpc-1", "gRPC predict"), ("feedback", "REST feedback"),
                     ("feedback-16", "durable REST feedback, 16 connections,"))
    for scenario, what in against_stock:
        for w in workers:
            river, stock = find("seldon-river", scenario, w), find("stock", scenario, w)
            if river and stock and stock["median"].get("rps"):
                ratio = river["median"]["rps"] / stock["median"]["rps"]
                cpu = river.get("ratios", {}).get("cpu_vs_stock")
                add(f"{what} per worker >= {TARGET_VS_STOCK:g}x stock wrapper ({w} worker{'s' if w > 1 else ''})",
                    ratio, TARGET_VS_STOCK,
                    f"seldon-river {river['median']['rps']:.0f} req/s vs stock {stock['median']['rps']:.0f} req/s; "
                    f"server CPU per request, stock's / seldon-river's: {fmt(cpu, '.2f')}",
                    floor=floor_ratio(scenario, stock["median"]["rps"], w))
    # The same through Seldon's real orchestrator; its own cost shows in a do-nothing component behind it.
    for scenario, what in against_stock:
        river, stock = find("executor+seldon-river", scenario, 1), find("executor+stock", scenario, 1)
        if river and stock and stock["median"].get("rps"):
            nothing = find("executor+floor-river", scenario, 1)
            add(f"{what} through Seldon's executor >= {TARGET_VS_STOCK:g}x the stock wrapper through it",
                river["median"]["rps"] / stock["median"]["rps"], TARGET_VS_STOCK,
                f"executor+seldon-river {river['median']['rps']:.0f} req/s vs executor+stock "
                f"{stock['median']['rps']:.0f} req/s",
                floor=nothing["median"]["rps"] / stock["median"]["rps"] if nothing else None)
    river, mls = find("seldon-river", "rest-1", 1), find("mlserver", "rest-1")
    if river and mls and mls["median"].get("rps"):
        add(f"REST predict >= {TARGET_VS_MLSERVER:g}x MLServer (1 worker vs 1 process)",
            river["median"]["rps"] / mls["median"]["rps"], TARGET_VS_MLSERVER,
            f"seldon-river {river['median']['rps']:.0f} req/s vs MLServer {mls['median']['rps']:.0f} req/s")
    r1, r2 = find("seldon-river", "rest-1", 1), find("seldon-river", "rest-1", 2)
    if r1 and r2 and r1["median"].get("rps"):
        s1, s2 = find("stock", "rest-1", 1), find("stock", "rest-1", 2)
        stock_scaling = (f"; stock scales {s2['median']['rps'] / s1['median']['rps']:.2f}x"
                         if s1 and s2 and s1["median"].get("rps") else "")
        f1 = find("floor", "rest-1", 1)
        add(f"REST predict scales ~linearly 1 -> 2 workers (>= {TARGET_SCALING:g}x)",
            r2["median"]["rps"] / r1["median"]["rps"], TARGET_SCALING,
            f"{r1['median']['rps']:.0f} -> {r2['median']['rps']:.0f} req/s{stock_scaling}",
            floor=floor_ratio("rest-1", f1["median"]["rps"], 2) if f1 else None)
    batch = find("seldon-river", "rest-100", 1)
    if batch and ceiling.get("batch100_rows_per_s"):
        add(f"100-row REST predict >= {TARGET_BATCH_CEILING:.0%} of in-process rows/s (1 worker)",
            batch["median"]["rows_per_s"] / ceiling["batch100_rows_per_s"], TARGET_BATCH_CEILING,
            f"{batch['median']['rows_per_s']:.0f} rows/s vs in-process {ceiling['batch100_rows_per_s']:.0f} rows/s "
            f"(best of a predict_proba_one loop and predict_proba_many on a ready DataFrame; the loop alone: "
            f"{ceiling['batch100_loop_rows_per_s']:.0f} rows/s, "
            f"{batch['median']['rows_per_s'] / ceiling['batch100_loop_rows_per_s']:.0%})",
            floor=floor_ratio("rest-100", ceiling["batch100_rows_per_s"]))
    return out


# -- report ---------------------------------------------------------------------------------
def fmt(value, spec: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def table(results: dict) -> str:
    lines = []
    serve = results.get("serve")
    if serve:
        head = (f"{'server':<26} {'w':>1} {'scenario':<11} {'req/s':>8} {'rows/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
                f" {'cpu ms/req':>10} {'x stock':>7} {'cpu x st':>8} {'x mlsrv':>7} {'% ceil':>7} {'errors':>6}")
        lines += [head, "-" * len(head)]
        order = {s: i for i, s in enumerate(SCENARIOS)}
        for c in sorted(serve["cells"], key=lambda c: (order[c["scenario"]], c["label"], c["workers"])):
            m, r = c["median"], c.get("ratios", {})
            lines.append(
                f"{c['server']:<26} {c['workers']:>1} {c['scenario']:<11} {fmt(m['rps']):>8} {fmt(m['rows_per_s'], '.0f'):>9}"
                f" {fmt(m['p50_ms'], '.2f'):>7} {fmt(m['p99_ms'], '.2f'):>7} {fmt(m.get('server_cpu_ms_per_request'), '.2f'):>10}"
                f" {fmt(r.get('vs_stock'), '.2f'):>7} {fmt(r.get('cpu_vs_stock'), '.2f'):>8} {fmt(r.get('vs_mlserver'), '.2f'):>7}"
                f" {fmt(None if r.get('vs_ceiling') is None else 100 * r['vs_ceiling'], '.1f'):>7} {m['errors']:>6}")
    ceiling = results.get("ceiling")
    if ceiling:
        lines += ["", "in-process river: "
                  f"predict_proba_one {fmt(ceiling['predict_proba_one_us'], '.2f')} us/row "
                  f"({fmt(ceiling['predict_rows_per_s'], '.0f')} rows/s); 100-row batch "
                  f"{fmt(ceiling['batch100_rows_per_s'], '.0f')} rows/s (loop {fmt(ceiling['batch100_loop_rows_per_s'], '.0f')},"
                  f" predict_proba_many {fmt(ceiling['batch100_many_rows_per_s'], '.0f')}); "
                  f"learn_one {fmt(ceiling['learn_one_per_s'], '.0f')}/s"]
    if results.get("targets"):
        lines += ["", "targets:"]
        for t in results["targets"]:
            verdict = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
            lines.append(f"  [{verdict:>7}] {t['target']}: {fmt(t['measured'], '.2f')} ({t['detail']})")
    state = results.get("state")
    if state:
        lines += ["", "learning log:"]
        for backend, lag in (state.get("lag") or {}).items():
            e, idle = lag["visible_everywhere"], lag["idle_predict_rtt"]
            lines.append(f"  {backend:<6} feedback -> visible in every process: p50 {e['p50_ms']} ms, p99 {e['p99_ms']} ms"
                         f" (a predict alone: p50 {idle['p50_ms']} ms; n={e['n']})")
        for backend, rest in (state.get("restore") or {}).items():
            runs = ", ".join(f"+{r['tail_events']} events {r['median_s']} s" for r in rest["runs"])
            lines.append(f"  {backend:<6} restore {rest['checkpoint_mb']} MB checkpoint: {runs} (unpickle alone {rest['unpickle_s']} s)")
        for backend, fb in (state.get("feedback") or {}).items():
            m = fb["median"]
            lines.append(f"  {backend:<6} REST feedback, 1 worker: {m['rps']} req/s (p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms)")
        for backend, rates in (state.get("append") or {}).items():
            lines.append(f"  {backend:<6} durable appends: " + ", ".join(
                f"{a['appends_per_s']}/s with {a['writers']} writer{'s' if a['writers'] > 1 else ''} (p50 {a['p50_ms']} ms)"
                for a in rates))
    if results.get("errors"):
        lines += ["", "errors:"] + [f"  {k}: {v.splitlines()[-1] if v else v}" for k, v in results["errors"].items()]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------
def river_venv(args: argparse.Namespace, log=print) -> Path | None:
    """The venv of the project's server that ``--river-venv`` names (None: this interpreter's)."""
    if args.river_venv == "this":
        return None
    if args.river_venv == "server":
        from . import venvs

        return venvs.ensure_project_server(log=log)
    return Path(args.river_venv)


def run_all(args: argparse.Namespace, mlserver_venv: Path | None = None, river: Path | None = None) -> dict:
    """Run the selected sections; returns the results dict (also written to ``args.out``).

    ``river`` is the venv the project's servers run from (None: this interpreter's).
    """
    results: dict = {"settings": {
        "sections": args.sections, "duration_s": args.duration, "rounds": args.rounds, "warmup_s": args.warmup,
        "connections": args.connections, "grpc_concurrency": args.grpc_concurrency, "servers": args.servers,
        "workers": args.workers, "scenarios": args.scenarios, "river_class": args.river_class,
        "river_env": args.river_env, "river_venv": args.river_venv, "river_param": args.river_param,
        "stock_env": args.stock_env, "variants": args.variant,
        "backends": list(args.backends), "load": "wrk -t1 (REST, Lua-cycled bodies); asyncio gRPC, one channel per call in flight",
    }, "machine": machine_info(mlserver_venv, river), "errors": {}}
    began = time.monotonic()
    own_tmp = None
    if args.workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="seldon-river-bench-")
        workdir = Path(own_tmp.name)
    else:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        results["machine"]["fsync"] = fsync_probe(workdir)
        work = Workload(workdir, mlserver_venv, river)
        if "serve" in args.sections:
            try:
                run_serve(args, workdir, work, results)
            except Exception:
                results["errors"]["serve"] = traceback.format_exc()
                log(f"serve section failed:\n{results['errors']['serve']}")
        if "ceiling" in args.sections and "ceiling" not in results:
            run_ceiling_alone(args, work, results)
        add_ratios(results)
        if "state" in args.sections:
            from . import state

            results["state"] = {}
            try:
                state.run(results["state"], workdir=workdir / "state", folder=work.folder, duration=args.duration,
                          rounds=args.rounds, connections=args.connections, lag_samples=args.lag_samples,
                          restore_rows=args.restore_rows, restore_tails=(0, args.restore_tail),
                          backends=args.backends, log=log)
            except Exception:
                results["errors"]["state"] = traceback.format_exc()
                log(f"state section failed:\n{results['errors']['state']}")
        if "keyed" in args.sections:
            if importlib.util.find_spec("benchmarks.keyed") is None:
                results["errors"]["keyed"] = "benchmarks/keyed.py not found"
            else:
                log("keyed section (benchmarks.keyed)")
                try:
                    # It stores its figures under results["keyed"].
                    importlib.import_module("benchmarks.keyed").run(results)
                except Exception:
                    results["errors"]["keyed"] = traceback.format_exc()
                    log(f"keyed section failed:\n{results['errors']['keyed']}")
        results["machine"]["fsync_end"] = fsync_probe(workdir)
    finally:
        if own_tmp is not None:
            own_tmp.cleanup()
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["elapsed_s"] = round(time.monotonic() - began, 1)
    if args.out:
        carry_over(results, args.out)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return results


# Sections a run may leave out; their figures stay in the results file, marked with their run's date.
CARRIED = ("state", "keyed", "keyed_sharded")


def carry_over(results: dict, out: Path) -> None:
    """Keep the sections of ``out`` that this run did not measure, saying when they were."""
    try:
        earlier = json.loads(out.read_text())
    except (OSError, ValueError):
        return
    carried = {}
    for key in CARRIED:
        if key in earlier and key not in results:
            results[key] = earlier[key]
            carried[key] = (earlier.get("carried") or {}).get(key) or (earlier.get("machine") or {}).get("date")
    if carried:
        results["carried"] = carried


def reexec_in_netns(argv: list[str]) -> None:
    """Run this command again inside the loopback-only namespace (Seldon's wrapper binds 0.0.0.0)."""
    script = REPO / "scripts" / "in-netns.sh"
    command = ["bash", str(script), sys.executable, "-m", "benchmarks.run", *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    os.chdir(REPO)
    os.execvpe("bash", command, env)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    venv = None
    # Before entering the namespace: installing needs the network, the namespace has none.
    if "serve" in args.sections and "mlserver" in args.servers:
        from .baselines import mlserver_env

        venv = mlserver_env.ensure(log=log)
    river = river_venv(args, log=log)
    if os.environ.get("SELDON_RIVER_IN_NETNS") != "1":
        reexec_in_netns(argv)
    results = run_all(args, venv, river)
    print(table(results))
    print(f"\nwrote {args.out} ({results['elapsed_s']} s)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

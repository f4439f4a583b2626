"""Reliability drills: kill -9 cycles under a feedback stream, and the fuzz suite's case count.

``python -m benchmarks.reliability`` (options below) prints the figures and writes them to
``benchmarks/reliability.json``. Everything runs on 127.0.0.1 under the project's own server
(``seldon-river-microservice``), bounded by counts and by ``--time-limit``.

**Kill drill**, per backend (a SQLite file; a private ``redis-server`` with ``appendfsync always``):

- two replicas of a RiverModel (the Phishing classifier) share one learning log;
- two client threads stream feedback, one row each, to either replica, each feedback named by
  its own ``seldon_river_feedback_id``. An answer is one of: 200 (*acknowledged*); no answer
  (connection refused or cut: the client resends the same id, to either replica, up to
  ``RETRIES`` times); 504 (outcome unknown: resent the same way); any other status
  (*refused*: never resent, so whether it was learned can be told afterwards);
- each cycle waits for ``--acks-per-cycle`` more acknowledgements, then kills one replica's whole
  process group with SIGKILL (alternately) and starts it again, replaying the log; on Redis every
  second cycle also kills redis-server with SIGKILL and restarts it on its data;
- afterwards the log is read whole (no checkpoint compacts it during the drill) and checked:
  every acknowledged id is in it (*lost* counts those that are not), ids refused at their only
  attempt are not (*refused but learned* counts those that are), each replica's ``learned``
  equals the number of distinct ids in the log (copies logged by retries are skipped), and both
  replicas answer a fixed probe bit-identically, equal to river replaying the log in process.

**Fuzz**: ``tests/test_fuzz.py`` on the project's server (every component, REST and gRPC) with
``SELDON_RIVER_FUZZ_EXAMPLES=--fuzz-examples``; each test fails on its first 5xx, gRPC INTERNAL,
hang, or refused call that changed the learned state. The figures are the calls checked (the
tests' ``fuzz_cases``) and the tests that failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import requests

from . import servers

OUT = Path(__file__).resolve().parent / "reliability.json"
FEEDBACK_ID_TAG = "seldon_river_feedback_id"
ALREADY_TAG = "seldon_river_already_learned"
RETRIES = 5
CALL_TIMEOUT = 30.0
STATE_NAME = "drill"


def log(message: str) -> None:
    print(f"[reliability] {message}", file=sys.stderr, flush=True)


# -- the client ---------------------------------------------------------------------------------
class Ledger:
    """What the clients were told about each feedback id, in the order they sent them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.answers: dict[str, list[str]] = {}  # id -> "ack", "copy", "none", "unknown", "refused:<status>"

    def note(self, feedback_id: str, answer: str) -> None:
        with self.lock:
            self.answers.setdefault(feedback_id, []).append(answer)

    def acknowledged(self) -> set[str]:
        with self.lock:
            return {i for i, a in self.answers.items() if a[-1] in ("ack", "copy")}

    def refused_at_once(self) -> set[str]:
        """Ids whose only attempt was refused: nothing may have logged them."""
        with self.lock:
            return {i for i, a in self.answers.items() if len(a) == 1 and a[0].startswith("refused")}

    def counts(self) -> dict:
        with self.lock:
            finals = collections.Counter(a[-1].split(":")[0] for a in self.answers.values())
            attempts = sum(len(a) for a in self.answers.values())
            statuses = collections.Counter(x for a in self.answers.values() for x in a if x.startswith("refused"))
        return {"feedback_ids": sum(finals.values()), "attempts": attempts,
                "acknowledged": finals["ack"] + finals["copy"], "acknowledged_as_copy": finals["copy"],
                "refused": finals["refused"], "never_answered": finals["none"] + finals["unknown"],
                "refusals_by_status": dict(sorted(statuses.items()))}


class Replicas:
    """The serving replicas the clients may pick, swapped as they are killed and restarted."""

    def __init__(self, started: list):
        self.lock = threading.Lock()
        self.by_slot = list(started)

    def pick(self, rng: random.Random):
        with self.lock:
            return rng.choice(self.by_slot)

    def replace(self, slot: int, server) -> None:
        with self.lock:
            self.by_slot[slot] = server


def feedback_body(x: dict, y, features: list[str], feedback_id: str) -> dict:
    return {"request": {"data": {"names": features, "ndarray": [[x[f] for f in features]]}},
            "response": {"meta": {"tags": {FEEDBACK_ID_TAG: feedback_id}}},
            "truth": {"jsonData": [y]}}


def send_once(server, body: dict) -> str:
    try:
        reply = requests.post(f"{server.rest_url}/api/v1.0/feedback", json=body, timeout=CALL_TIMEOUT)
    except requests.RequestException:
        return "none"
    if reply.status_code == 200:
        tags = ((reply.json().get("meta") or {}).get("tags") or {})
        return "copy" if tags.get(ALREADY_TAG) else "ack"
    if reply.status_code == 504:
        return "unknown"
    return f"refused:{reply.status_code}"


def client(name: str, replicas: Replicas, stream: list, features: list[str], ledger: Ledger,
           stop: threading.Event, seed: int) -> None:
    """Send feedbacks until ``stop``; resend an unanswered one with its id, never a refused one."""
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        x, y = stream[n % len(stream)]
        feedback_id = f"{name}-{n}"
        n += 1
        body = feedback_body(x, y, features, feedback_id)
        for _ in range(1 + RETRIES):
            answer = send_once(replicas.pick(rng), body)
            ledger.note(feedback_id, answer)
            if answer not in ("none", "unknown"):
                break
            time.sleep(0.05)  # a replica is restarting, or the log is down
        if answer.startswith("refused") or answer in ("none", "unknown"):
            time.sleep(0.02)  # do not spin while everything refuses


# -- processes ------------------------------------------------------------------------------------
def kill9(process: servers.Process) -> None:
    """SIGKILL the whole process group at once, as the kernel's OOM killer or a node loss would."""
    try:
        os.killpg(process.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.proc.wait(timeout=30)


def start_replica(workdir: Path, name: str, folder: Path, state_uri: str) -> servers.SeldonServer:
    parameters = {"model_uri": str(folder), "state_uri": state_uri, "state_name": STATE_NAME,
                  # No checkpoint during the drill: the whole log stays readable for the checks.
                  "checkpoint_every": 10_000_000}
    return servers.SeldonServer(workdir, name, "seldon-river", servers.RIVER_CLASS, parameters,
                                server="seldon-river").start()


def restart_redis(old: servers.RedisServer) -> servers.RedisServer:
    again = servers.RedisServer(old.workdir, name=old.name)
    again.port = old.port
    return again.start()


# -- checks ---------------------------------------------------------------------------------------
def status(server) -> dict:
    return requests.get(f"{server.rest_url}/health/status", timeout=CALL_TIMEOUT).json()["jsonData"]


def probe(server, rows: list[dict], features: list[str]) -> list:
    body = {"data": {"names": features, "ndarray": [[r[f] for f in features] for r in rows]}}
    reply = requests.post(f"{server.rest_url}/api/v1.0/predictions", json=body, timeout=CALL_TIMEOUT)
    reply.raise_for_status()
    return reply.json()["data"]["ndarray"]


def read_log(folder: Path, state_uri: str) -> list[dict]:
    from model_wrappers.artifact import load_model
    from model_wrappers.config import StateSettings
    from model_wrappers.log import open_log
    from model_wrappers.log.replica import decode

    meta = load_model(folder).metadata
    name = StateSettings.resolve(meta.name, meta.sha256, state_uri=state_uri, state_name=STATE_NAME).name
    store = open_log(state_uri, name)
    try:
        events, after = [], 0
        while True:
            batch = store.read(after, 1000)
            if not batch:
                return events
            events += [decode(payload) for _, payload in batch]
            after = batch[-1][0]
    finally:
        store.close()


def replayed(folder: Path, events: list[dict], rows: list[dict]) -> list[list[float]]:
    """What river itself predicts for ``rows`` after learning each logged id once, in log order."""
    from model_wrappers.artifact import load_model

    model = load_model(folder).pipeline
    seen = set()
    for event in events:
        if event.get("id") in seen:
            continue
        seen.add(event.get("id"))
        for x, y in zip(event["rows"], event["truth"]):
            model.learn_one(x, y)
    return [[model.predict_proba_one(x).get(c, 0.0) for c in (True, False)] for x in rows]


def settle(replicas: list, head: int, timeout: float = 60.0) -> None:
    """Wait until every replica has applied the log up to ``head``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(status(r)["replica"]["position"] >= head for r in replicas):
            return
        time.sleep(0.2)


# -- the kill drill -------------------------------------------------------------------------------
def kill_drill(backend: str, workdir: Path, cycles: int, acks_per_cycle: int, deadline: float) -> dict:
    began = time.monotonic()
    folder = servers.export_phishing_model(workdir / "model", model=servers.pipeline())
    data = servers.phishing()
    features = list(data[0][0])
    stream, probes = data[:-5], [x for x, _ in data[-5:]]
    redis = None
    if backend == "redis":
        redis = servers.RedisServer(workdir, name="redis").start()
        state_uri = redis.url
    else:
        state_uri = f"sqlite:///{workdir}/state.db"
    started = [start_replica(workdir, f"{backend}-a", folder, state_uri),
               start_replica(workdir, f"{backend}-b", folder, state_uri)]
    replicas = Replicas(started)
    everything = list(started)
    ledger, stop = Ledger(), threading.Event()
    clients = [threading.Thread(target=client, args=(f"{backend}-c{i}", replicas, stream, features, ledger, stop, i),
                                daemon=True) for i in range(2)]
    done = {"cycles": 0, "replica_kills": 0, "redis_kills": 0}
    try:
        for thread in clients:
            thread.start()
        for cycle in range(cycles):
            target = len(ledger.acknowledged()) + acks_per_cycle
            while len(ledger.acknowledged()) < target and time.monotonic() < deadline:
                time.sleep(0.05)
            if time.monotonic() >= deadline:
                log(f"{backend}: time limit reached after {cycle} cycles")
                break
            slot = cycle % 2
            victim = replicas.by_slot[slot]
            kill9(victim)  # calls in flight to it are cut: their clients resend them
            # Until it is back, new calls go to the survivor, as a Service would route them.
            replicas.replace(slot, replicas.by_slot[1 - slot])
            done["replica_kills"] += 1
            if redis is not None and cycle % 2 == 1:
                kill9(redis)
                done["redis_kills"] += 1
                time.sleep(0.3)  # feedback meanwhile is refused (503) or its outcome unknown (504)
                redis = restart_redis(redis)
            again = start_replica(workdir, f"{backend}-{'ab'[slot]}{cycle + 1}", folder, state_uri)
            everything.append(again)
            replicas.replace(slot, again)
            done["cycles"] += 1
            log(f"{backend}: cycle {cycle + 1}/{cycles}, {len(ledger.acknowledged())} acknowledged")
        stop.set()
        for thread in clients:
            thread.join(timeout=2 * CALL_TIMEOUT * (1 + RETRIES))

        events = read_log(folder, state_uri)
        alive = list(replicas.by_slot)
        settle(alive, len(events))
        # An explicit feedback id is logged as "id:<id>" (a request id as "puid:<id>").
        in_log = collections.Counter(str(e.get("id")).removeprefix("id:") for e in events)
        acknowledged = ledger.acknowledged()
        refused = ledger.refused_at_once()
        answers = [probe(r, probes, features) for r in alive]
        expected = replayed(folder, events, probes)
        learned = [status(r)["metrics"].get("learned") for r in alive]
        return {
            "backend": backend,
            **done,
            **ledger.counts(),
            "logged_events": len(events),
            "distinct_ids_logged": len(in_log),
            "copies_logged_and_skipped": sum(n - 1 for n in in_log.values()),
            "lost": len(acknowledged - set(in_log)),
            "refused_at_once": len(refused),
            "refused_but_learned": len(refused & set(in_log)),
            "learned_by_each_replica": learned,
            "each_learned_every_id_once": all(n == len(in_log) for n in learned),
            "replicas_bit_identical": all(a == answers[0] for a in answers),
            "max_abs_difference_from_river": max(abs(a - b) for row, want in zip(answers[0], expected)
                                                 for a, b in zip(row, want)),
            "elapsed_s": round(time.monotonic() - began, 1),
        }
    finally:
        stop.set()
        for server in everything:
            server.stop()
        if redis is not None:
            redis.stop()


# -- fuzz -------------------------------------------------------------------------------------------
def fuzz(examples: int, workdir: Path, timeout: float) -> dict:
    """Run tests/test_fuzz.py on the project's server; the calls it checked and the tests that failed."""
    repo = servers.REPO
    report = workdir / "fuzz.xml"
    env = {**os.environ, "SELDON_RIVER_FUZZ_EXAMPLES": str(examples),
           "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "tests")])}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(repo / "tests" / "test_fuzz.py"),
               "-k", "seldon-river", f"--junitxml={report}", "--basetemp", str(workdir / "fuzz")]
    began = time.monotonic()
    try:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"the fuzz suite did not finish within {timeout:.0f} s"}
    cases, tests, failures = {}, 0, []
    for case in ET.parse(report).getroot().iter("testcase"):
        tests += 1
        for prop in case.iter("property"):
            if prop.get("name") == "fuzz_cases":
                cases[case.get("name")] = int(prop.get("value"))
        for failed in list(case.iter("failure")) + list(case.iter("error")):
            failures.append(f"{case.get('name')}: {(failed.get('message') or '')[:300]}")
    return {"examples_per_strategy": examples, "tests": tests, "cases": sum(cases.values()),
            "cases_by_test": cases, "failed_tests": failures, "server_errors_found": len(failures),
            "exit_code": done.returncode, "elapsed_s": round(time.monotonic() - began, 1)}


# -- command line -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability", description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,redis", help="kill drills to run, comma separated")
    parser.add_argument("--cycles", type=int, default=6, help="kill -9 cycles per backend")
    parser.add_argument("--acks-per-cycle", type=int, default=100, help="acknowledged feedbacks between kills")
    parser.add_argument("--fuzz-examples", type=int, default=20,
                        help="SELDON_RIVER_FUZZ_EXAMPLES for the fuzz suite; 0 skips it")
    parser.add_argument("--time-limit", type=float, default=600.0,
                        help="seconds after which no new kill cycle starts (the fuzz suite has as long again)")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the figures (JSON)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and state here (default: a temp folder)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    began = time.monotonic()
    deadline = began + args.time_limit
    own = None
    if args.workdir is None:
        own = tempfile.TemporaryDirectory(prefix="seldon-river-reliability-")
        workdir = Path(own.name)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                     "kill_drills": [], "errors": {}}
    try:
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            log(f"{backend}: kill drill, {args.cycles} cycles of {args.acks_per_cycle} acknowledgements")
            try:
                results["kill_drills"].append(kill_drill(backend, workdir / backend, args.cycles,
                                                         args.acks_per_cycle, deadline))
            except Exception as exc:  # noqa: BLE001 - a drill that cannot run is reported, the others still run
                results["errors"][backend] = f"{type(exc).__name__}: {exc}"
        if args.fuzz_examples > 0:
            log(f"fuzz suite, {args.fuzz_examples} examples per strategy")
            results["fuzz"] = fuzz(args.fuzz_examples, workdir, timeout=args.time_limit)
    finally:
        if own is not None:
            own.cleanup()
    results["machine"] = {"nproc": os.cpu_count(), "loadavg_end": list(os.getloadavg())}
    results["elapsed_s"] = round(time.monotonic() - began, 1)
    totals = collections.Counter()
    for drill in results["kill_drills"]:
        for key in ("cycles", "replica_kills", "redis_kills", "acknowledged", "lost", "refused_at_once",
                    "refused_but_learned"):
            totals[key] += drill[key]
    results["totals"] = dict(totals)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return results


def summary(results: dict) -> str:
    lines = []
    for d in results["kill_drills"]:
        lines.append(
            f"{d['backend']}: {d['cycles']} kill -9 cycles ({d['replica_kills']} replica kills, {d['redis_kills']} "
            f"redis-server kills), {d['acknowledged']} acknowledged, {d['lost']} lost, {d['refused_at_once']} refused, "
            f"{d['refused_but_learned']} refused but learned, {d['copies_logged_and_skipped']} retried copies skipped, "
            f"replicas bit-identical: {d['replicas_bit_identical']}, every id learned once by each: "
            f"{d['each_learned_every_id_once']}"
        )
    fuzzed = results.get("fuzz")
    if fuzzed and "cases" in fuzzed:
        lines.append(f"fuzz: {fuzzed['cases']} cases in {fuzzed['tests']} tests, "
                     f"{fuzzed['server_errors_found']} failed (5xx, INTERNAL, hang or state change)")
    elif fuzzed:
        lines.append(f"fuzz: {fuzzed['error']}")
    for what, error in results["errors"].items():
        lines.append(f"{what}: not run: {error}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    print(summary(results))
    print(f"wrote {args.out} ({results['elapsed_s']} s)")
    failed = results["errors"] or results["totals"].get("lost") or results["totals"].get("refused_but_learned")
    fuzzed = results.get("fuzz") or {}
    return 1 if failed or fuzzed.get("error") or fuzzed.get("server_errors_found") else 0


if __name__ == "__main__":
    sys.exit(main())

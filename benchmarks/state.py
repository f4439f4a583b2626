"""Learning-log figures: how fast feedback becomes visible everywhere, restores, and log throughput.

- **lag**: two RiverModel microservices share one log (as the processes of one pod share a
  SQLite file, or replicas share Redis): four processes, A-REST, A-gRPC, B-REST and B-gRPC.
  Each feedback goes to A-REST; the other three are probed concurrently with a predict of the
  same row until their reply's ``meta.tags.seldon_river_position`` reaches the position the
  feedback was acknowledged at. Lag is measured from the acknowledgement to the first such reply.
- **restore**: a checkpoint of a large model (an adaptive random forest, several MB) plus a tail
  of logged events, loaded by a fresh :class:`~model_wrappers.log.replica.Replica` exactly as a
  starting process does.
- **feedback throughput**: REST feedback with wrk against A (a one-worker RiverModel) per
  backend, alternating backends over the rounds, and raw ``append`` rates of each backend with
  one and with four concurrent writers (each with its own connection).
"""

from __future__ import annotations

import concurrent.futures
import json
import statistics
import threading
import time
from pathlib import Path

import requests

from . import load, servers

POSITION_TAG = "seldon_river_position"


def percentiles(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values_ms)
    pick = lambda q: round(ordered[int(q * (len(ordered) - 1))], 3)  # noqa: E731
    return {"n": len(ordered), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(ordered[-1], 3)}


# -- lag ------------------------------------------------------------------------------------
class RestProbe:
    def __init__(self, server: servers.Server):
        self.name = f"{server.name}/rest"
        self.url = server.rest_url + server.rest_predict_path
        self.body = b""
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def position(self) -> int:
        reply = self.session.post(self.url, data=self.body, headers={"Content-Type": "application/json"},
                                  timeout=10)
        reply.raise_for_status()
        return int(reply.json()["meta"]["tags"][POSITION_TAG])


class GrpcProbe:
    def __init__(self, server: servers.Server):
        import grpc
        from seldon_core.proto import prediction_pb2

        self.name = f"{server.name}/grpc"
        self.channel = grpc.insecure_channel(server.grpc_target)
        self.call = self.channel.unary_unary(server.grpc_predict_method,
                                             response_deserializer=prediction_pb2.SeldonMessage.FromString)
        self.body = b""

    def close(self) -> None:
        self.channel.close()

    def position(self) -> int:
        return int(self.call(self.body, timeout=10).meta.tags[POSITION_TAG].number_value)


def start_pair(workdir: Path, folder: Path, state_uri: str) -> tuple[servers.SeldonServer, servers.SeldonServer]:
    """Two one-worker RiverModel microservices sharing the log at ``state_uri``."""
    params = {"model_uri": str(folder), "state_uri": state_uri}
    backend = state_uri.split(":", 1)[0]
    a = servers.SeldonServer(workdir, f"log-{backend}-a", "seldon-river", servers.RIVER_CLASS, params)
    b = servers.SeldonServer(workdir, f"log-{backend}-b", "seldon-river", servers.RIVER_CLASS, params)
    try:
        a.start()
        b.start()
    except BaseException:
        a.stop()
        b.stop()
        raise
    return a, b


def measure_lag(a: servers.Server, b: servers.Server, backend: str, samples: int, rows: list[dict], labels: list,
                log=print) -> dict:
    """Feedback-to-visible lag across the four processes of ``a`` and ``b`` (feedback goes to A's REST)."""
    feedback_url = a.rest_url + a.rest_feedback_path
    session = requests.Session()
    per_process: dict[str, list[float]] = {}
    everywhere: list[float] = []
    idle_probe: list[float] = []
    # Connections are made once: a lag must not include connecting.
    probes = [GrpcProbe(a), RestProbe(b), GrpcProbe(b)]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        for i in range(samples):
            row, label = rows[i % len(rows)], labels[i % len(labels)]
            body = json.dumps(load.seldon_json([row])).encode()
            proto = load.seldon_proto([row])
            for probe in probes:
                probe.body = proto if isinstance(probe, GrpcProbe) else body
            # A probe with nothing new to apply: what a predict costs here anyway.
            began = time.perf_counter()
            probes[1].position()
            idle_probe.append((time.perf_counter() - began) * 1000)
            reply = session.post(feedback_url, data=json.dumps(load.seldon_feedback_json([row], [label])),
                                 headers={"Content-Type": "application/json"}, timeout=10)
            acked = time.perf_counter()
            reply.raise_for_status()
            position = int(reply.json()["meta"]["tags"][POSITION_TAG])

            def wait(probe) -> float:
                deadline = acked + 30
                while time.perf_counter() < deadline:
                    if probe.position() >= position:
                        return (time.perf_counter() - acked) * 1000
                raise TimeoutError(f"{probe.name} did not reach position {position} in 30 s")

            lags = list(pool.map(wait, probes))
            for probe, lag in zip(probes, lags):
                per_process.setdefault(probe.name, []).append(lag)
            everywhere.append(max(lags))
    for probe in probes:
        probe.close()
    result = {
        "backend": backend,
        "processes": [f"{a.name}/rest (receives the feedback)", *per_process],
        "visible_everywhere": percentiles(everywhere),
        "per_process": {name: percentiles(v) for name, v in per_process.items()},
        "idle_predict_rtt": percentiles(idle_probe),
    }
    log(f"  lag {backend}: everywhere p50 {result['visible_everywhere']['p50_ms']} ms, "
        f"p99 {result['visible_everywhere']['p99_ms']} ms ({samples} feedbacks)")
    return result


# -- restore --------------------------------------------------------------------------------
def large_model(rows: int):
    """An adaptive random forest after ``rows`` rows of river's Agrawal stream, and held-out rows."""
    from river import forest
    from river.datasets import synth

    model = forest.ARFClassifier(n_models=10, seed=1)
    stream = list(synth.Agrawal(seed=1).take(rows + 1000))
    for x, y in stream[:rows]:
        model.learn_one(x, y)
    return model, stream[rows:]


def measure_restore(state_uri: str, model, tail_rows: list, tails: tuple[int, ...], repeats: int, tag: str,
                    log=print) -> dict:
    """Time a fresh Replica's start from a checkpoint of ``model`` plus each tail length."""
    import dill

    from model_wrappers.learning.model import ModelState
    from model_wrappers.log import open_log
    from model_wrappers.log.replica import Replica, encode

    backend = state_uri.split(":", 1)[0]
    state = ModelState(model, "classifier", (0, 1))
    blob = state.snapshot()
    began = time.perf_counter()
    dill.loads(blob)
    unpickle = time.perf_counter() - began
    out = {"backend": backend, "checkpoint_mb": round(len(blob) / 1e6, 2), "unpickle_s": round(unpickle, 3),
           "runs": []}
    for tail in tails:
        name = f"restore-{tag}-{tail}"
        writer = open_log(state_uri, name)
        # The checkpoint covers position 1 (backends keep a checkpoint only if it is newer than
        # the one they hold, and start with none at 0); the tail follows it.
        first_x, first_y = tail_rows[-1]
        writer.append(encode({"type": "learn", "rows": [first_x], "truth": [first_y]}))
        writer.save_checkpoint(1, blob)
        for x, y in tail_rows[:tail]:
            writer.append(encode({"type": "learn", "rows": [x], "truth": [y]}))
        times = []
        for _ in range(repeats):
            reader = open_log(state_uri, name)
            began = time.perf_counter()
            replica = Replica(lambda: None, ModelState.restore, reader)
            replica.start()
            times.append(time.perf_counter() - began)
            if replica.position != tail + 1 or replica.replayed != tail:
                raise RuntimeError(f"restore reached position {replica.position} after replaying "
                                   f"{replica.replayed} events; expected {tail + 1} after {tail}")
            reader.close()
        writer.close()
        out["runs"].append({"tail_events": tail, "median_s": round(statistics.median(times), 3),
                            "min_s": round(min(times), 3), "repeats": repeats})
        log(f"  restore {backend}: {out['checkpoint_mb']} MB checkpoint + {tail} events: "
            f"{statistics.median(times):.3f} s")
    return out


# -- throughput -----------------------------------------------------------------------------
def append_rate(state_uri: str, name: str, writers: int, seconds: float) -> dict:
    """Durable appends per second with ``writers`` threads, each with its own connection."""
    from model_wrappers.log import open_log
    from model_wrappers.log.replica import encode

    payload = encode({"type": "learn", "rows": [{"x": 0.5, "y": 1.0}], "truth": [True]})
    logs = [open_log(state_uri, name) for _ in range(writers)]
    counts = [0] * writers
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def work(i: int) -> None:
        mine = []
        while time.perf_counter() < end:
            began = time.perf_counter()
            logs[i].append(payload)
            mine.append((time.perf_counter() - began) * 1000)
            counts[i] += 1
        with lock:
            latencies.extend(mine)

    began = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    for log_ in logs:
        log_.close()
    return {"writers": writers, "appends_per_s": round(sum(counts) / elapsed, 1),
            **{k: v for k, v in percentiles(latencies).items() if k != "n"}}


def feedback_throughput(targets: dict[str, servers.Server], bodies: list[bytes], duration: float, rounds: int,
                        connections: int, log=print) -> dict:
    """REST feedback req/s of a one-worker RiverModel per backend (alternating, median of rounds)."""
    runs: dict[str, list[dict]] = {b: [] for b in targets}
    for r in range(rounds):
        order = list(targets)
        order = order[r % len(order):] + order[:r % len(order)]
        for backend in order:
            server = targets[backend]
            runs[backend].append(load.wrk(server.rest_url + server.rest_feedback_path, bodies, duration, connections,
                                          start_index=r * 97))
    out = {}
    for backend, results in runs.items():
        out[backend] = {"server": targets[backend].name, "median": load.median_of(results), "runs": results}
        log(f"  feedback {backend} (1 worker): {out[backend]['median']['rps']} req/s")
    return out


def run(out: dict, *, workdir: Path, folder: Path, duration: float = 5.0, rounds: int = 3, connections: int = 4,
        lag_samples: int = 200, restore_rows: int = 5000, restore_tails: tuple[int, ...] = (0, 500),
        restore_repeats: int = 3, append_seconds: float = 2.0, backends: tuple[str, ...] = ("sqlite", "redis"),
        log=print) -> dict:
    """The learning-log section; fills and returns ``out``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = servers.phishing()
    rows, labels = [x for x, _ in data], [y for _, y in data]
    redis_server = None
    pairs: dict[str, tuple] = {}
    try:
        uris = {}
        for backend in backends:
            if backend == "sqlite":
                uris["sqlite"] = f"sqlite:///{workdir / 'state-section.db'}"
            elif backend == "redis":
                redis_server = servers.RedisServer(workdir).start()
                uris["redis"] = redis_server.url
                out["redis_version"] = redis_server.version()
            else:
                raise ValueError(f"backend must be sqlite or redis, got {backend!r}")

        log("learning log: feedback-to-visible lag")
        for backend, uri in uris.items():
            pairs[backend] = start_pair(workdir, folder, uri)
        out["lag"] = {backend: measure_lag(a, b, backend, lag_samples, rows, labels, log)
                      for backend, (a, b) in pairs.items()}

        log("learning log: feedback throughput")
        bodies = [json.dumps(load.seldon_feedback_json([x], [y])).encode() for x, y in zip(rows, labels)]
        out["feedback"] = feedback_throughput({b: p[0] for b, p in pairs.items()}, bodies, duration, rounds,
                                              connections, log)
        for a, b in pairs.values():
            a.stop()
            b.stop()

        log(f"learning log: restore (adaptive random forest after {restore_rows} rows)")
        model, tail_rows = large_model(restore_rows)
        out["restore"] = {backend: measure_restore(uri, model, tail_rows, restore_tails, restore_repeats,
                                                   f"{restore_rows}", log)
                          for backend, uri in uris.items()}

        out["append"] = {}
        for backend, uri in uris.items():
            append_uri = uri if backend != "sqlite" else f"sqlite:///{workdir / 'append.db'}"
            out["append"][backend] = [append_rate(append_uri, f"append-{w}", w, append_seconds) for w in (1, 4)]
            log(f"  raw appends {backend}: " + ", ".join(
                f"{a['appends_per_s']}/s with {a['writers']} writer(s)" for a in out["append"][backend]))
        return out
    finally:
        for a, b in pairs.values():
            a.stop()
            b.stop()
        if redis_server is not None:
            redis_server.stop()

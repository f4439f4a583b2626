"""Durable feedback through Kafka, side by side with SQLite and Redis; writes benchmarks/kafka.json.

For each backend two one-worker RiverModel microservices (A and B: four processes with their
gRPC ones) share one log, and:

- **feedback/s**: acknowledged REST feedback per second into A, with wrk (median of rounds,
  backends alternating);
- **visible-everywhere lag**: from the acknowledgement of a feedback by A-REST until A-gRPC,
  B-REST and B-gRPC all answer a predict at its position (p50/p99), as :mod:`benchmarks.state`
  measures it;
- **raw appends/s** of the backend with one and with four writers.

Kafka runs as one real broker on 127.0.0.1 (KRaft, ``flush.messages=1`` on the topics: every
acknowledged append is fsynced) from the jars ``scripts/kafka.sh`` caches; Redis with
``appendfsync always``; SQLite with ``synchronous=FULL``.

    python -m benchmarks.kafka_log [--duration 4] [--rounds 2] [--lag-samples 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from . import load, servers, state
from .kafka_broker import KafkaCluster

OUT = Path(__file__).resolve().parent / "kafka.json"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=4.0, help="seconds of wrk per round and backend")
    p.add_argument("--rounds", type=int, default=2, help="wrk rounds per backend (the median is kept)")
    p.add_argument("--connections", type=int, default=4, help="wrk connections")
    p.add_argument("--lag-samples", type=int, default=100, help="feedbacks whose lag is measured per backend")
    p.add_argument("--append-seconds", type=float, default=2.0, help="seconds of raw appends per writer count")
    p.add_argument("--backends", default="sqlite,redis,kafka", help="comma-separated: sqlite, redis, kafka")
    p.add_argument("--out", type=Path, default=OUT, help="where the figures are written")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    began = time.time()
    out: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)), "machine": {
        "python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="seldon-river-kafka-bench-") as tmp:
        workdir = Path(tmp)
        folder = servers.export_phishing_model(workdir / "model")
        data = servers.phishing()
        rows, labels = [x for x, _ in data], [y for _, y in data]
        redis_server = kafka = None
        pairs: dict[str, tuple] = {}
        try:
            uris = {}
            for backend in backends:
                if backend == "sqlite":
                    uris[backend] = f"sqlite:///{workdir / 'state.db'}"
                elif backend == "redis":
                    redis_server = servers.RedisServer(workdir).start()
                    uris[backend] = redis_server.url
                    out["redis_version"] = redis_server.version()
                elif backend == "kafka":
                    kafka = KafkaCluster(workdir / "kafka", nodes=1).start()
                    uris[backend] = kafka.uri()
                    out["kafka_version"] = kafka.version()
                else:
                    raise ValueError(f"backend must be sqlite, redis or kafka, got {backend!r}")
            for backend, uri in uris.items():
                pairs[backend] = state.start_pair(workdir, folder, uri)
            print("visible-everywhere lag")
            out["lag"] = {b: state.measure_lag(a, r, b, args.lag_samples, rows, labels)
                          for b, (a, r) in pairs.items()}
            print("acknowledged feedback/s")
            bodies = [json.dumps(load.seldon_feedback_json([x], [y])).encode() for x, y in zip(rows, labels)]
            out["feedback"] = state.feedback_throughput({b: p[0] for b, p in pairs.items()}, bodies, args.duration,
                                                        args.rounds, args.connections)
            for a, r in pairs.values():
                a.stop()
                r.stop()
            pairs.clear()
            out["append"] = {}
            for backend, uri in uris.items():
                append_uri = uri if backend != "sqlite" else f"sqlite:///{workdir / 'append.db'}"
                out["append"][backend] = [state.append_rate(append_uri, f"append-{w}", w, args.append_seconds)
                                          for w in (1, 4)]
                print(f"  raw appends {backend}: " + ", ".join(
                    f"{a['appends_per_s']}/s with {a['writers']} writer(s)" for a in out["append"][backend]))
        finally:
            for a, r in pairs.values():
                a.stop()
                r.stop()
            if redis_server is not None:
                redis_server.stop()
            if kafka is not None:
                kafka.stop()
    out["summary"] = {b: {"feedback_per_s": out["feedback"][b]["median"]["rps"],
                          "feedback_errors": out["feedback"][b]["median"].get("errors"),
                          "visible_everywhere_p50_ms": out["lag"][b]["visible_everywhere"]["p50_ms"],
                          "visible_everywhere_p99_ms": out["lag"][b]["visible_everywhere"]["p99_ms"],
                          "appends_per_s_1_writer": out["append"][b][0]["appends_per_s"],
                          "appends_per_s_4_writers": out["append"][b][1]["appends_per_s"]}
                      for b in backends}
    out["seconds"] = round(time.time() - began, 1)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()

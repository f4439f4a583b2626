"""Predictions with the live view's streams open and without; writes benchmarks/live_view.json.

One RiverModel on the project's server (one worker). For each round, wrk posts one-row
predictions for ``--duration`` seconds with no ``/live/events`` stream open, then with
``--streams`` streams open (each read by its own thread), in alternating order; the figures are
the medians of the rounds, with the events each stream received per second.

    python -m benchmarks.live_view [--duration 5] [--rounds 3] [--streams 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from . import load, servers

OUT = Path(__file__).resolve().parent / "live_view.json"


class Reader:
    """One /live/events stream, read to the end on a thread; counts the events it got."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(b"GET /live/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        self.events = 0
        self.status = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        data = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                data += chunk
                if self.status is None and b"\r\n" in data:
                    self.status = int(data.split(b" ", 2)[1])
                self.events += data.count(b"event: status")
                data = data[-16:]  # a marker cut in two is counted with the next chunk
        except OSError:
            return

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


def measure(server, bodies: list[bytes], duration: float, streams: int) -> dict:
    readers = [Reader(server.metrics) for _ in range(streams)]
    try:
        time.sleep(0.5)  # every stream open and receiving before the load starts
        refused = [r.status for r in readers if r.status != 200]
        if refused:
            raise RuntimeError(f"streams refused with {refused}: raise SELDON_RIVER_LIVE_MAX_STREAMS")
        before = [r.events for r in readers]
        result = load.wrk(server.rest_url + "/api/v1.0/predictions", bodies, duration, connections=4)
        received = [r.events - b for r, b in zip(readers, before)]
    finally:
        for reader in readers:
            reader.close()
    result["streams"] = streams
    result["events_per_stream_per_s"] = round(statistics.mean(received) / result["seconds"], 2) if streams else None
    return result


def median_of(runs: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p99_ms", "errors", "events_per_stream_per_s")
    return {k: (statistics.median(r[k] for r in runs) if runs[0][k] is not None else None) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=8, help="live streams open in the second condition")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="seldon-river-live-bench-") as tmp:
        work = Path(tmp)
        folder = servers.export_phishing_model(work / "model")
        rows = [x for x, _ in servers.phishing()]
        bodies = [json.dumps(load.seldon_json(b)).encode() for b in load.batches(rows, 1, 200)]
        server = servers.SeldonServer(work, "live-view", "seldon-river", "model_wrappers.RiverModel",
                                      {"model_uri": str(folder), "state_uri": f"sqlite:///{work}/state.db"},
                                      env={"SELDON_RIVER_LIVE_MAX_STREAMS": str(max(8, args.streams))},
                                      server="seldon-river")
        with server:
            runs: dict[int, list[dict]] = {0: [], args.streams: []}
            for round_ in range(args.rounds):
                order = (0, args.streams) if round_ % 2 == 0 else (args.streams, 0)
                for streams in order:
                    runs[streams].append(measure(server, bodies, args.duration, streams))
    without, with_streams = median_of(runs[0]), median_of(runs[args.streams])
    results = {
        "settings": {"duration_s": args.duration, "rounds": args.rounds, "streams": args.streams,
                     "connections": 4, "rows_per_request": 1},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "without_streams": without,
        "with_streams": with_streams,
        "rps_ratio": round(with_streams["rps"] / without["rps"], 3) if without["rps"] else None,
        "runs": {str(k): v for k, v in runs.items()},
        "elapsed_s": round(time.monotonic() - began, 1),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'events/s per stream':>22}")
    for label, figures in (("no live stream", without), (f"{args.streams} live streams", with_streams)):
        events = "-" if figures["events_per_stream_per_s"] is None else f"{figures['events_per_stream_per_s']:.2f}"
        print(f"{label:<22}{figures['rps']:>10.1f}{figures['p50_ms']:>10.3f}{figures['p99_ms']:>10.3f}{events:>22}")
    print(f"with/without streams: {results['rps_ratio']} of the predictions per second; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

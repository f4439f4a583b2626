"""Bounded loopback load: wrk for REST, an asyncio gRPC client for gRPC, and the request bodies.

Both generators keep a fixed number of requests in flight (wrk connections, gRPC channels with
one call each) for a fixed duration, cycle through a list of pre-encoded bodies, and report the
same figures: completed requests, requests/s, latency percentiles and errors.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

# wrk runs this in each of its threads: every request body is formatted once in init(), and
# done() prints the figures as one JSON line (latencies are in microseconds).
WRK_SCRIPT = r"""
local requests = {}
local next_index = 0

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line)
    end
  end
  file:close()
  next_index = (tonumber(args[2]) or 0) % #requests
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


# -- bodies ---------------------------------------------------------------------------------
def batches(rows: list[dict], size: int, count: int | None = None) -> list[list[dict]]:
    """Consecutive ``size``-row batches cycling through ``rows`` (``count`` of them, default all)."""
    count = count or max(1, len(rows) // size)
    return [[rows[(i * size + j) % len(rows)] for j in range(size)] for i in range(count)]


def seldon_json(batch: list[dict]) -> dict:
    names = list(batch[0])
    return {"data": {"names": names, "ndarray": [[row[n] for n in names] for row in batch]}}


def seldon_feedback_json(batch: list[dict], labels: list) -> dict:
    return {"request": seldon_json(batch), "truth": {"data": {"ndarray": [[y] for y in labels]}}}


def v2_json(batch: list[dict], name: str = "input-0") -> dict:
    names = list(batch[0])
    return {"inputs": [{"name": name, "shape": [len(batch), len(names)], "datatype": "FP64",
                        "data": [float(row[n]) for row in batch for n in names]}]}


def seldon_proto(batch: list[dict]) -> bytes:
    """A SeldonMessage with a tensor (what SeldonClient sends over gRPC by default)."""
    from seldon_core.utils import json_to_seldon_message

    names = list(batch[0])
    message = {"data": {"names": names, "tensor": {"shape": [len(batch), len(names)],
                                                   "values": [float(row[n]) for row in batch for n in names]}}}
    return json_to_seldon_message(message).SerializeToString()


def seldon_feedback_proto(batch: list[dict], labels: list) -> bytes:
    from seldon_core.utils import json_to_feedback

    return json_to_feedback(seldon_feedback_json(batch, labels)).SerializeToString()


V2_ENCODER = r"""
import base64, json, sys
from mlserver.grpc import converters
from mlserver.types import InferenceRequest
for line in sys.stdin:
    request = converters.ModelInferRequestConverter.from_types(
        InferenceRequest(**json.loads(line)), model_name=sys.argv[1])
    print(base64.b64encode(request.SerializeToString()).decode())
"""


def v2_protos(batches_: list[list[dict]], venv: Path, model_name: str) -> list[bytes]:
    """ModelInferRequest bytes, encoded by MLServer's own converters in its virtual environment."""
    lines = "".join(json.dumps(v2_json(b)) + "\n" for b in batches_)
    out = subprocess.run([str(Path(venv) / "bin" / "python"), "-c", V2_ENCODER, model_name], input=lines,
                         capture_output=True, text=True, check=True)
    return [base64.b64decode(line) for line in out.stdout.split()]


# -- generators -----------------------------------------------------------------------------
def summarise(requests: int, elapsed: float, latencies_us: list[float] | None = None, *, p50_us=None,
              p99_us=None, errors: int = 0, rows_per_request: int = 1) -> dict:
    """The figures every run reports."""
    if latencies_us:
        ordered = sorted(latencies_us)
        p50_us = ordered[int(0.50 * (len(ordered) - 1))]
        p99_us = ordered[int(0.99 * (len(ordered) - 1))]
    rps = requests / elapsed if elapsed > 0 else 0.0
    return {
        "requests": int(requests), "seconds": round(elapsed, 3), "rps": round(rps, 1),
        "rows_per_s": round(rps * rows_per_request, 1),
        "p50_ms": None if p50_us is None else round(p50_us / 1000, 3),
        "p99_ms": None if p99_us is None else round(p99_us / 1000, 3),
        "errors": int(errors),
    }


def wrk_version() -> str | None:
    exe = shutil.which("wrk")
    if exe is None:
        return None
    out = subprocess.run([exe, "-v"], capture_output=True, text=True)
    found = re.search(r"wrk\s+(\S+)", out.stdout + out.stderr)
    return found.group(1) if found else None


def wrk(url: str, bodies: list[bytes], duration: float, connections: int = 4, threads: int = 1,
        rows_per_request: int = 1, start_index: int = 0, timeout: float = 10.0) -> dict:
    """POST ``bodies`` (cycled) to ``url`` with wrk for ``duration`` seconds.

    ``errors`` counts connect/read/write errors, timeouts and HTTP statuses >= 400; a server that
    closes each connection after its reply (gunicorn's sync worker) is not an error.
    """
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk not found: install it (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="seldon-river-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT)
        data = Path(tmp) / "bodies.jsonl"
        data.write_bytes(b"".join(b.rstrip(b"\n") + b"\n" for b in bodies))
        seconds = max(1, int(round(duration)))
        command = [exe, f"-t{threads}", f"-c{max(connections, threads)}", f"-d{seconds}s",
                   f"--timeout={int(timeout)}s", "-s", str(script), url, "--", str(data), str(start_index)]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + timeout + 30)
    found = re.search(r"^WRK_RESULT (\{.*\})$", out.stdout, re.M)
    if out.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]}{out.stderr[-2000:]}")
    raw = json.loads(found.group(1))
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    result = summarise(raw["requests"], raw["duration_us"] / 1e6, p50_us=raw["p50_us"], p99_us=raw["p99_us"],
                       errors=errors, rows_per_request=rows_per_request)
    result["wrk"] = raw
    return result


async def _grpc_load(target: str, method: str, bodies: list[bytes], duration: float, concurrency: int,
                     timeout: float) -> tuple[int, float, list[float], int]:
    import grpc

    # One channel per in-flight call, each with its own TCP connection (a local subchannel pool),
    # so SO_REUSEPORT can spread them over a server's gRPC processes like wrk's connections.
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(concurrency)]
    try:
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 10) for c in channels))
        calls = [c.unary_unary(method) for c in channels]  # bytes in, bytes out
        latencies: list[float] = []
        errors = 0
        begin = time.perf_counter()
        end = begin + duration

        async def one(slot: int) -> None:
            nonlocal errors
            call, index = calls[slot], slot
            while True:
                started = time.perf_counter()
                if started >= end:
                    return
                try:
                    await call(bodies[index % len(bodies)], timeout=timeout)
                    latencies.append((time.perf_counter() - started) * 1e6)
                except grpc.aio.AioRpcError:
                    errors += 1
                index += concurrency

        await asyncio.gather(*(one(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - begin
        return len(latencies), elapsed, latencies, errors
    finally:
        await asyncio.gather(*(c.close() for c in channels))


def grpc_load(target: str, method: str, bodies: list[bytes], duration: float, concurrency: int = 4,
              rows_per_request: int = 1, timeout: float = 10.0) -> dict:
    """Unary calls of ``method`` with ``bodies`` (cycled), ``concurrency`` in flight, for ``duration`` s."""
    done, elapsed, latencies, errors = asyncio.run(
        _grpc_load(target, method, bodies, duration, concurrency, timeout))
    return summarise(done, elapsed, latencies, errors=errors, rows_per_request=rows_per_request)


def median_of(results: list[dict]) -> dict:
    """Per-figure medians over rounds (requests and errors are summed)."""
    if not results:
        return {}
    out = {}
    for key in ("rps", "rows_per_s", "p50_ms", "p99_ms", "seconds"):
        values = [r[key] for r in results if r.get(key) is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    out["requests"] = sum(r["requests"] for r in results)
    out["errors"] = sum(r["errors"] for r in results)
    out["rounds"] = len(results)
    return out

"""Several serving processes sharing one component's ports (``--workers N``).

The supervisor binds the REST and metrics ports once and hands both sockets to every worker;
each worker binds the gRPC port with ``SO_REUSEPORT``. Each worker is a whole server with its
own replica of the learned state, kept in step through the shared learning log, so a worker
that dies is simply started again: it restores the newest checkpoint and replays the log.
Workers are new interpreters (not forks), as gRPC does not survive a fork.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .main import listening_socket

logger = logging.getLogger("seldon_river.server")

RESTART_DELAY = 1.0


def _worker_command(args, fds: str) -> list[str]:
    return [
        sys.executable, "-m", "model_wrappers.server", args.interface_name,
        "--service-type", args.service_type, "--parameters", args.parameters, "--host", args.host,
        "--http-port", str(args.http_port), "--grpc-port", str(args.grpc_port),
        "--metrics-port", str(args.metrics_port), "--threads", str(args.threads),
        "--max-body-bytes", str(args.max_body_bytes), "--grace", str(args.grace),
        "--log-level", args.log_level, "--workers", "1", "--worker-sockets", fds,
    ]


def supervise(args) -> int:
    try:
        rest = listening_socket(args.host, args.http_port)
        metrics = listening_socket(args.host, args.metrics_port)
    except OSError as exc:
        print(f"seldon-river-microservice: {exc.strerror}", file=sys.stderr)
        return 1
    share_dir = tempfile.mkdtemp(prefix="seldon-river-metrics-")
    env = {**os.environ, "SELDON_RIVER_METRICS_DIR": share_dir}
    fds = f"{rest.fileno()},{metrics.fileno()}"
    command = _worker_command(args, fds)
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, env=env, pass_fds=(rest.fileno(), metrics.fileno()))

    workers = [start() for _ in range(args.workers)]
    logger.info("%d workers started for %s", args.workers, args.interface_name)
    status = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, worker in enumerate(workers):
                code = worker.poll()
                if code is None or stopping:
                    continue
                shared = os.path.join(share_dir, f"{worker.pid}.json")
                if os.path.exists(shared):
                    os.remove(shared)
                if code == 1 and all(w.poll() is not None for w in workers):
                    # Every worker failed at start (a bad folder, a busy port): not worth restarting.
                    stopping, status = True, 1
                    break
                logger.warning("worker %d exited with %s; starting it again", worker.pid, code)
                time.sleep(RESTART_DELAY)
                workers[i] = start()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + args.grace + 2
        for worker in workers:
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        shutil.rmtree(share_dir, ignore_errors=True)
    return status


"""Keyed mode at M5 size: 30,490 products, a KNN and a linear model each.

Figures (all stored under ``out["keyed"]``):

- ``build``: offline warm-up of every product's two models on ``warm_days`` days (plain river),
  export of the keyed folder, size of ``keys.db``;
- ``serve``: in one process, as Seldon runs it: ``load()`` time and RSS; the time to touch every
  key once (pipelines load lazily from the folder); feedback requests/s for 1 row; a day of
  feedback for every product (batches of 500 mixed keys); the checkpoint after that day (time,
  keys and bytes written); RSS after the day; then predict requests/s for 1 row and for batches of
  100 mixed keys, next to the same figures for a single-model ``RiverModel`` serving each
  candidate, and their mixture in the proportions the keys chose;
- ``restore`` (fresh processes): ``load()`` on that state, then touching every key (lazy), or
  ``preload`` in bulk; and the bounded-memory mode (at most ``lru_keys`` keys in memory)
  restoring and taking another day of feedback;
- ``http`` (only inside the loopback network namespace, where Seldon's wrapper may bind): the
  same predict figures through the project's server with wrk, keyed against single-model; and
  ``pod_rss_mb``: the memory of one pod serving REST and gRPC with every key touched, on the
  project's server (one process) and on ``seldon-core-microservice`` (a REST and a gRPC process).

Run ``python -m benchmarks.keyed --keys 2000`` for a quick look; the default is the M5 size.

``--sharded`` measures keyed models sharded by key instead (figures under ``out["keyed_sharded"]``,
merged into an existing ``--out`` file): for 1 (unsharded), 2 and 4 shards, each shard in a fresh
process of its own, as its own pod runs it: RSS after ``load()``, after touching its keys and after
a day of feedback for its keys, and predict requests/s (1 row; 100 rows of its keys) in process;
the key router's ``route`` requests/s; and RSS per shard at M5 size extrapolated from the
measured per-key memory. ``make bench-sharded`` runs it at ``SHARDED_KEYS`` products.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEY = "product_id"
TARGETS = {"rss_mb": 2048, "restore_s": 30.0, "predict_ratio": 0.8}
SEED = 0
# One day of feedback already splits the products between their two candidates.
MIN_OBSERVATIONS = 1
ROUNDS = 5


# -- helpers ----------------------------------------------------------------------------------
def rss_mb(pid: int | str = "self") -> dict:
    """Resident and peak resident memory of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS"), "peak_rss_mb": fields.get("VmHWM")}


def rate(fn, bodies: list, seconds: float = 3.0, rows: int = 1) -> dict:
    """Call ``fn`` on ``bodies`` (cycled) for about ``seconds``; requests and rows per second."""
    done = 0
    began = time.perf_counter()
    while True:
        fn(bodies[done % len(bodies)])
        done += 1
        elapsed = time.perf_counter() - began
        if elapsed >= seconds and done >= 20:
            break
    return {"requests": done, "rps": round(done / elapsed, 1), "rows_per_s": round(done * rows / elapsed, 1)}


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    began = time.perf_counter()
    result = fn(*args, **kwargs)
    return round(time.perf_counter() - began, 3), result


def jsonable_rows(day, ids=None) -> list[dict]:
    return [{KEY: pid, **x} for pid, x, _ in day.records() if ids is None or pid in ids]


def feedback_proto(rows: list[dict], truth: list[float]):
    from seldon_core.utils import json_to_feedback

    return json_to_feedback({"request": {"jsonData": rows}, "truth": {"jsonData": truth}})


def in_batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# -- phases -----------------------------------------------------------------------------------
def build(workdir: Path, keys: int, warm_days: int) -> dict:
    """Warm every product's two models offline on ``warm_days`` days and export the folder."""
    from model_wrappers.keyed_artifact import export_keyed
    from model_wrappers.learning.keyed import gc_paused
    from model_wrappers.synthetic import FEATURES, Sales, candidates

    sales = Sales(keys, seed=SEED)
    began = time.perf_counter()
    mapping = {pid: candidates() for pid in sales.ids}
    with gc_paused():
        for day in sales.days(warm_days):
            for pid, x, y in day.records():
                for model in mapping[pid].values():
                    model.learn_one(x, y)
    warm_s = round(time.perf_counter() - began, 3)
    export_s, _ = timed(export_keyed, workdir / "model", templates=candidates(), mapping=mapping,
                        features=FEATURES, key_feature=KEY, name="m5", min_observations=MIN_OBSERVATIONS)
    # A single-model folder per candidate: the baseline each keyed figure is compared with.
    from model_wrappers.artifact import export_model

    first = sales.ids[0]
    for name, model in mapping[first].items():
        export_model(model, workdir / f"single-{name}", task="regressor", features=FEATURES, name=f"single-{name}")
    return {"keys": keys, "candidates": 2, "warm_days": warm_days, "min_observations": MIN_OBSERVATIONS,
            "warm_up_s": warm_s, "export_s": export_s,
            "keys_db_mb": round((workdir / "model" / "keys.db").stat().st_size / 2**20, 1)}


def checkpoint(replica) -> None:
    """What a replica does every ``checkpoint_every`` events: snapshot, store, compact."""
    from model_wrappers.learning.keyed import gc_paused

    with gc_paused():
        blob = replica.state.snapshot()
    replica.log.save_checkpoint(replica.position, blob)
    replica.log.compact(replica.position - 1)


def mixture_rps(shares: dict[str, float], rps: dict[str, float]) -> float:
    """Requests/s of single models serving each candidate's share of the keys (time-weighted)."""
    total = sum(shares.values())
    return 1.0 / sum(share / total / rps[name] for name, share in shares.items() if share)


def loaded_and_next_day(figures: dict, workdir: Path, state_uri: str, keys: int, warm_days: int, **params):
    """A KeyedRiverModel on the benchmark's folder, loaded (its time and RSS into ``figures``), the
    sales stream past its warm-up days, and the day that follows them."""
    from model_wrappers.keyed_model import KeyedRiverModel
    from model_wrappers.synthetic import Sales

    model = KeyedRiverModel(model_uri=str(workdir / "model"), state_uri=state_uri, checkpoint_every=10**9, **params)
    figures["load_s"], _ = timed(model.load)
    figures["rss_after_load"] = rss_mb()
    sales = Sales(keys, seed=SEED)
    for _ in sales.days(warm_days):
        pass
    return model, sales, sales.day()


def serve(workdir: Path, keys: int, warm_days: int) -> dict:
    """One serving process: load, touch, feedback, a day for every key, checkpoint, predict."""
    from google.protobuf import json_format
    from seldon_core.utils import json_to_feedback

    from model_wrappers.river_model import RiverModel

    figures: dict = {"rss_at_start": rss_mb()}
    state_uri = f"sqlite:///{workdir}/state.db"
    model, sales, day = loaded_and_next_day(figures, workdir, state_uri, keys, warm_days)
    rows = jsonable_rows(day)
    rnd = random.Random(SEED)

    def touch_all():
        for batch in in_batches(rows, 1000):
            model.predict_raw({"jsonData": batch})

    figures["touch_every_key_s"], _ = timed(touch_all)
    figures["rss_after_touch"] = rss_mb()
    sample = rnd.sample(range(len(rows)), min(len(rows), 1000))
    one_row = [feedback_proto([rows[i]], [day.sales[i]]) for i in sample]
    figures["feedback_1_row"] = rate(model.send_feedback_raw, one_row, seconds=3.0)
    # The day, fed back for every product in batches of 500 mixed keys.
    order = list(range(len(rows)))
    rnd.shuffle(order)
    batches = [feedback_proto([rows[i] for i in part], [day.sales[i] for i in part]) for part in in_batches(order, 500)]

    def whole_day():
        for fb in batches:
            model.send_feedback_raw(fb)

    figures["feedback_day_s"], _ = timed(whole_day)
    figures["feedback_day_rows_per_s"] = round(len(rows) / figures["feedback_day_s"], 1)
    replica = model.replica

    figures["checkpoint_s"], _ = timed(replica.read, lambda state: checkpoint(replica))
    written = replica.state.last_checkpoint
    figures["checkpoint_keys"] = written["keys"]
    figures["checkpoint_mb"] = round(written["bytes"] / 2**20, 1)
    figures["state_db_mb"] = round(sum(p.stat().st_size for p in workdir.glob("state.db*")) / 2**20, 1)
    figures["rss_after_day"] = rss_mb()
    figures["aggregates"] = model.status()["metrics"]
    # Single-model baselines: the same day of feedback and the same checkpoint, so their logs hold
    # the same events as the keyed one.
    servers = {"keyed": model}
    for name in ("linear", "knn"):
        single = RiverModel(model_uri=str(workdir / f"single-{name}"), state_uri=f"sqlite:///{workdir}/single.db",
                            checkpoint_every=10**9)
        single.load()
        for fb in batches:
            message = json_format.MessageToDict(fb)
            plain_rows = [{k: v for k, v in r.items() if k != KEY} for r in message["request"]["jsonData"]]
            single.send_feedback_raw(json_to_feedback({"request": {"jsonData": plain_rows}, "truth": message["truth"]}))
        single.replica.read(lambda state: checkpoint(single.replica))
        servers[f"single_{name}"] = single
    gc.collect()
    # Predictions on the next day, each key served by the candidate it has chosen so far. The
    # servers take turns, round after round, so a change in the machine's load hits them alike.
    rows = jsonable_rows(sales.day())
    ones = [{"jsonData": [r]} for r in rnd.sample(rows, min(len(rows), 5000))]
    mixed = [{"jsonData": rnd.sample(rows, min(100, len(rows)))} for _ in range(200)]
    bodies = {"keyed": (ones, mixed)}
    for name in ("single_linear", "single_knn"):
        bodies[name] = tuple([{"jsonData": [{k: v for k, v in r.items() if k != KEY} for r in b["jsonData"]]}
                              for b in kind] for kind in (ones, mixed))
    rounds: dict = {f"{name}_{what}": [] for name in servers for what in ("1_row", "100_rows")}
    for _ in range(ROUNDS):
        for name, server in servers.items():
            one, hundred = bodies[name]
            rounds[f"{name}_1_row"].append(rate(server.predict_raw, one, seconds=1.0))
            rounds[f"{name}_100_rows"].append(rate(server.predict_raw, hundred, seconds=1.0, rows=100))
    for key, results in rounds.items():
        figures[f"predict_{key}"] = {
            "rps": statistics.median(r["rps"] for r in results),
            "rows_per_s": statistics.median(r["rows_per_s"] for r in results),
            "rounds": len(results),
        }
    single_rps = {name: figures[f"predict_single_{name}_1_row"]["rps"] for name in ("linear", "knn")}
    shares = {name: figures["aggregates"][f"keys_chosen_{name}"] for name in single_rps}
    figures["predict_single_mixture_1_row_rps"] = round(mixture_rps(shares, single_rps), 1)
    keyed = figures["predict_keyed_1_row"]["rps"]
    for name, base in [*single_rps.items(), ("mixture", figures["predict_single_mixture_1_row_rps"])]:
        figures[f"predict_1_row_ratio_vs_single_{name}"] = round(keyed / base, 3)
    return figures


def restore(workdir: Path, mode: str, keys: int, lru_keys: int) -> dict:
    """A fresh process restoring the state ``serve`` left (run in a subprocess for clean RSS)."""
    from model_wrappers.keyed_model import KeyedRiverModel
    from model_wrappers.synthetic import Sales

    params = {"preload": mode == "preload", "max_keys_in_memory": lru_keys if mode == "lru" else 0}
    figures: dict = {"mode": mode, **params}
    model = KeyedRiverModel(model_uri=str(workdir / "model"), state_uri=f"sqlite:///{workdir}/state.db",
                            checkpoint_every=10**9, **params)
    figures["load_s"], _ = timed(model.load)
    figures["rss_after_load"] = rss_mb()
    status = model.status()
    figures["replica"] = {k: status["replica"][k] for k in ("position", "restored_from", "replayed_at_start")}
    figures["keys_loaded_after_load"] = status["metrics"]["keys_loaded"]
    sales = Sales(keys, seed=SEED)
    day = sales.day()
    rows = jsonable_rows(day)

    def touch_all():
        for batch in in_batches(rows, 1000):
            model.predict_raw({"jsonData": batch})

    figures["touch_every_key_s"], _ = timed(touch_all)
    figures["restore_s"] = round(figures["load_s"] + figures["touch_every_key_s"], 3)
    figures["rss_after_touch"] = rss_mb()
    if mode == "lru":
        rnd = random.Random(SEED)
        singles = [{"jsonData": [r]} for r in rnd.sample(rows, min(len(rows), 5000))]
        figures["predict_1_row_random_keys"] = rate(model.predict_raw, singles)
        order = list(range(len(rows)))
        rnd.shuffle(order)
        batches = [feedback_proto([rows[i] for i in part], [day.sales[i] for i in part])
                   for part in in_batches(order, 500)]

        def whole_day():
            for fb in batches:
                model.send_feedback_raw(fb)

        figures["feedback_day_s"], _ = timed(whole_day)
        figures["rss_after_day"] = rss_mb()
        figures["keys_loaded_after_day"] = model.status()["metrics"]["keys_loaded"]
    return figures


SHARD_COUNTS = (1, 2, 4)
SHARDED_KEYS = 6000  # small enough for about two minutes on a 2-core machine


def shard(workdir: Path, keys: int, warm_days: int, shards: int, index: int) -> dict:
    """One shard in a fresh process, as its pod runs it: its keys only, then a day of their feedback."""
    from model_wrappers.learning.shards import Shards

    owner = Shards(shards, index)
    figures: dict = {"shards": shards, "shard": index, "rss_at_start": rss_mb()}
    model, sales, day = loaded_and_next_day(figures, workdir, f"sqlite:///{workdir}/sharded-{shards}.db", keys, warm_days,
                                     shards=shards, shard=index)
    mine = [i for i, pid in enumerate(day.ids) if owner.owns(pid)]
    rows = jsonable_rows(day)
    rows, truth = [rows[i] for i in mine], [day.sales[i] for i in mine]
    figures["keys_owned"] = len(rows)

    def touch_all():
        for batch in in_batches(rows, 1000):
            model.predict_raw({"jsonData": batch})

    figures["touch_own_keys_s"], _ = timed(touch_all)
    figures["rss_after_touch"] = rss_mb()
    rnd = random.Random(SEED)
    order = list(range(len(rows)))
    rnd.shuffle(order)
    batches = [feedback_proto([rows[i] for i in part], [truth[i] for i in part]) for part in in_batches(order, 500)]

    def whole_day():
        for fb in batches:
            model.send_feedback_raw(fb)

    figures["feedback_day_s"], _ = timed(whole_day)
    figures["rss_after_day"] = rss_mb()
    status = model.status()
    figures["keys_loaded"] = status["metrics"]["keys_loaded"]
    figures["learned"] = status["metrics"]["learned"]
    figures["log_name"] = status["replica"]["log_name"]
    gc.collect()
    nxt = jsonable_rows(sales.day())
    nxt = [r for r in nxt if owner.owns(r[KEY])]
    ones = [{"jsonData": [r]} for r in rnd.sample(nxt, min(len(nxt), 5000))]
    hundred = [{"jsonData": rnd.sample(nxt, min(100, len(nxt)))} for _ in range(200)]
    runs = {"1_row": [], "100_rows": []}
    for _ in range(ROUNDS):
        runs["1_row"].append(rate(model.predict_raw, ones, seconds=1.0))
        runs["100_rows"].append(rate(model.predict_raw, hundred, seconds=1.0, rows=100))
    for what, results in runs.items():
        figures[f"predict_{what}"] = {"rps": statistics.median(r["rps"] for r in results),
                                      "rows_per_s": statistics.median(r["rows_per_s"] for r in results)}
    return figures


def route_rate(keys: int, shards: int) -> dict:
    """The key router's ``route`` on 1-row requests, in process."""
    from model_wrappers.key_router import KeyRouter
    from model_wrappers.synthetic import Sales

    router = KeyRouter(shards=shards, key_feature=KEY)
    router.load()
    rows = jsonable_rows(Sales(keys, seed=SEED).day())
    bodies = [{"jsonData": [r]} for r in random.Random(SEED).sample(rows, min(len(rows), 5000))]
    return {"route_1_row_rps": statistics.median(rate(router.route_raw, bodies, seconds=1.0)["rps"]
                                                 for _ in range(ROUNDS))}


def sharded(out: dict, keys: int = SHARDED_KEYS, warm_days: int = 28, workdir: str | None = None) -> None:
    """Measure 1, 2 and 4 shards and store the figures in ``out["keyed_sharded"]`` (also printed)."""
    from model_wrappers.synthetic import M5_PRODUCTS

    figures: dict = {"keys": keys, "candidates": 2, "warm_days": warm_days, "shard_counts": list(SHARD_COUNTS)}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seldon-river-sharded-", dir=workdir) as tmp:
        folder = Path(tmp)
        figures["build"] = build(folder, keys, warm_days)
        print(json.dumps({"build": figures["build"]}), flush=True)
        for count in SHARD_COUNTS:
            per_shard = []
            for index in range(count):
                result = in_subprocess(folder, "shard", keys, 0, warm_days, ["--shards", str(count), "--shard", str(index)])
                print(json.dumps({f"shards_{count}": result}), flush=True)
                per_shard.append(result)
            figures[f"shards_{count}"] = {
                "per_shard": per_shard,
                "keys_per_shard": [r["keys_owned"] for r in per_shard],
                "rss_after_day_mb": [r["rss_after_day"]["rss_mb"] for r in per_shard],
                "max_rss_after_day_mb": max(r["rss_after_day"]["rss_mb"] for r in per_shard),
                "predict_1_row_rps_per_shard": [r["predict_1_row"]["rps"] for r in per_shard],
                # Each shard is a pod of its own: with the keys' traffic spread like the keys, the
                # deployment serves the sum (measured one shard at a time, each alone on the machine).
                "predict_1_row_rps_all_shards": round(sum(r["predict_1_row"]["rps"] for r in per_shard), 1),
                **route_rate(keys, count),
            }
    whole = figures["shards_1"]["per_shard"][0]
    base = whole["rss_after_load"]["rss_mb"]
    per_key_kb = (whole["rss_after_day"]["rss_mb"] - base) * 1024 / keys
    figures["rss_per_key_kb"] = round(per_key_kb, 1)
    figures["m5_estimate"] = {
        "keys": M5_PRODUCTS,
        "rss_after_day_mb_per_shard": {str(n): round(base + per_key_kb * M5_PRODUCTS / n / 1024, 0)
                                       for n in SHARD_COUNTS},
        "rule": "RSS after load() of the folder + measured memory per key x keys per shard",
    }
    figures["elapsed_s"] = round(time.perf_counter() - began, 1)
    out["keyed_sharded"] = figures
    print(json.dumps({"summary": {f"shards_{n}": {k: v for k, v in figures[f"shards_{n}"].items() if k != "per_shard"}
                                  for n in SHARD_COUNTS} | {"m5_estimate": figures["m5_estimate"],
                                                            "elapsed_s": figures["elapsed_s"]}}), flush=True)


def in_subprocess(workdir: Path, mode: str, keys: int, lru_keys: int, warm_days: int,
                  extra: list[str] | None = None) -> dict:
    command = [sys.executable, "-m", "benchmarks.keyed", "--phase", mode, "--workdir", str(workdir),
               "--keys", str(keys), "--lru-keys", str(lru_keys), "--warm-days", str(warm_days), *(extra or [])]
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(command, capture_output=True, text=True, cwd=repo, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def http(workdir: Path, keys: int, seconds: float = 4.0) -> dict:
    """Keyed against single-model through seldon-core-microservice, measured with wrk.

    The keyed server restores the state the other phases left (every key has chosen a
    candidate, one day of feedback not checkpointed yet); each single-model server serves one
    candidate and first takes the same day of feedback, so every log holds the same events. The
    servers take turns, round after round; their mixture in the keyed server's proportions is
    the figure to compare with.
    """
    import contextlib

    import requests

    from benchmarks.load import wrk
    from benchmarks.servers import SeldonServer
    from model_wrappers.synthetic import Sales

    sales = Sales(keys, seed=SEED)
    feedback_day = sales.day()
    rows = jsonable_rows(sales.day())
    rnd = random.Random(SEED)
    ones = [json.dumps({"jsonData": [r]}).encode() for r in rnd.sample(rows, min(len(rows), 2000))]
    mixed = [json.dumps({"jsonData": rnd.sample(rows, min(100, len(rows)))}).encode() for _ in range(100)]

    def strip(body: bytes) -> bytes:
        return json.dumps({"jsonData": [{k: v for k, v in r.items() if k != KEY}
                                        for r in json.loads(body)["jsonData"]]}).encode()

    figures: dict = {}
    specs = {
        "keyed": ("model_wrappers.keyed_model.KeyedRiverModel",
                  {"model_uri": str(workdir / "model"), "state_uri": f"sqlite:///{workdir}/state.db"}, ones, mixed),
    }
    for name in ("linear", "knn"):
        specs[f"single_{name}"] = ("model_wrappers.RiverModel",
                                   {"model_uri": str(workdir / f"single-{name}"),
                                    "state_uri": f"sqlite:///{workdir}/http-single.db"},
                                   [strip(b) for b in ones], [strip(b) for b in mixed])
    rounds: dict = {f"{label}_{what}": [] for label in specs for what in ("1_row", "100_rows")}
    with contextlib.ExitStack() as stack:
        servers = {}
        for label, (class_path, params, _, _) in specs.items():
            began = time.perf_counter()
            servers[label] = stack.enter_context(SeldonServer(workdir / "http", label, label, class_path, params,
                                                              server="seldon-river"))
            figures[f"{label}_start_s"] = round(time.perf_counter() - began, 2)
            base = servers[label].rest_url
            if label == "keyed":  # first touch of every key, so the steady state is measured
                for batch in in_batches(rows, 1000):
                    reply = requests.post(f"{base}/api/v1.0/predictions", json={"jsonData": batch}, timeout=600)
                    reply.raise_for_status()
                status = requests.get(f"{base}/health/status", timeout=60).json()["jsonData"]
                shares = {n: status["metrics"][f"keys_chosen_{n}"] for n in ("linear", "knn")}
                figures["keyed_replica_at_start"] = status["replica"]
            else:
                plain = [{k: v for k, v in r.items() if k != KEY} for r in jsonable_rows(feedback_day)]
                for part in in_batches(list(range(len(plain))), 500):
                    body = {"request": {"jsonData": [plain[i] for i in part]},
                            "truth": {"jsonData": [feedback_day.sales[i] for i in part]}}
                    requests.post(f"{base}/api/v1.0/feedback", json=body, timeout=600).raise_for_status()
        for _ in range(3):
            for label, (_, _, one_bodies, batch_bodies) in specs.items():
                url = f"{servers[label].rest_url}/api/v1.0/predictions"
                rounds[f"{label}_1_row"].append(wrk(url, one_bodies, seconds, connections=2))
                rounds[f"{label}_100_rows"].append(wrk(url, batch_bodies, seconds, connections=2, rows_per_request=100))
        for label, server in servers.items():
            figures[f"{label}_rss_mb"] = {str(pid): rss_mb(pid)["rss_mb"] for pid in server.pids()}
    figures["pod_rss_mb"] = pod_memory(workdir, specs["keyed"][1], rows)
    for key, results in rounds.items():
        figures[f"predict_{key}"] = {
            "rps": statistics.median(r["rps"] for r in results),
            "rows_per_s": statistics.median(r["rows_per_s"] for r in results),
            "p50_ms": statistics.median(r["p50_ms"] for r in results),
            "p99_ms": statistics.median(r["p99_ms"] for r in results),
            "rounds": len(results),
        }
    single = {n: figures[f"predict_single_{n}_1_row"]["rps"] for n in ("linear", "knn")}
    figures["keys_chosen"] = shares
    figures["predict_single_mixture_1_row_rps"] = round(mixture_rps(shares, single), 1)
    keyed = figures["predict_keyed_1_row"]["rps"]
    for name, base in [*single.items(), ("mixture", figures["predict_single_mixture_1_row_rps"])]:
        figures[f"predict_1_row_ratio_vs_single_{name}"] = round(keyed / base, 3)
    return figures


def pod_memory(workdir: Path, params: dict, rows: list[dict]) -> dict:
    """RSS of one pod serving REST and gRPC, every key touched: the project's server against Seldon's.

    Seldon's wrapper serves REST and gRPC from separate processes, each loading the keys; the
    project's server answers both from one process. Each runs alone, on a copy of the state.
    """
    import shutil

    import requests

    from benchmarks.servers import SeldonServer

    figures: dict = {}
    for server in ("seldon-river", "seldon-core"):
        state = workdir / f"pod-{server}.db"
        shutil.copyfile(workdir / "state.db", state)
        with SeldonServer(workdir / "pod", f"pod-{server}", server, "model_wrappers.keyed_model.KeyedRiverModel",
                          {**params, "state_uri": f"sqlite:///{state}"}, server=server) as pod:
            for batch in in_batches(rows, 1000):
                requests.post(f"{pod.rest_url}/api/v1.0/predictions", json={"jsonData": batch},
                              timeout=600).raise_for_status()
            # Seldon's gRPC process loads the keys on its own first gRPC calls: touch them there too.
            if server == "seldon-core":
                touch_over_grpc(pod.grpc_target, rows)
            per_process = {str(pid): rss_mb(pid)["rss_mb"] for pid in pod.pids()}
        figures[server] = {"processes": per_process, "total": round(sum(v for v in per_process.values() if v), 1)}
    figures["ratio_seldon_river_vs_seldon_core"] = round(figures["seldon-river"]["total"] / figures["seldon-core"]["total"], 3)
    return figures


def touch_over_grpc(target: str, rows: list[dict]) -> None:
    import grpc

    from model_wrappers.protocol import SERVICES, dict_to_message

    method = SERVICES["seldon.protos.Model"]["Predict"]
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)]) as channel:
        call = channel.unary_unary(method.path, request_serializer=method.request.SerializeToString,
                                   response_deserializer=method.response.FromString)
        for batch in in_batches(rows, 1000):
            call(dict_to_message({"jsonData": batch}), timeout=600)


# -- entry points -----------------------------------------------------------------------------
def run(out: dict, keys: int | None = None, warm_days: int = 28, lru_keys: int = 5000,
        workdir: str | None = None, with_http: bool | None = None) -> None:
    """Measure keyed mode and store the figures in ``out["keyed"]`` (also printed)."""
    from model_wrappers.synthetic import M5_PRODUCTS

    keys = keys or M5_PRODUCTS
    with_http = os.environ.get("SELDON_RIVER_IN_NETNS") == "1" if with_http is None else with_http
    figures: dict = out.setdefault("keyed", {})
    with tempfile.TemporaryDirectory(prefix="seldon-river-keyed-", dir=workdir) as tmp:
        folder = Path(tmp)
        figures["build"] = build(folder, keys, warm_days)
        print(json.dumps({"build": figures["build"]}), flush=True)
        figures["serve"] = in_subprocess(folder, "serve", keys, lru_keys, warm_days)
        print(json.dumps({"serve": figures["serve"]}), flush=True)
        figures["restore"] = {}
        for mode in ("lazy", "preload", "lru"):
            figures["restore"][mode] = in_subprocess(folder, mode, keys, lru_keys, warm_days)
            print(json.dumps({f"restore_{mode}": figures["restore"][mode]}), flush=True)
        if with_http:
            figures["http"] = http(folder, keys)
            print(json.dumps({"http": figures["http"]}), flush=True)
    serve_ = figures["serve"]
    lazy = figures["restore"]["lazy"]
    figures["targets"] = {
        "rss_under_2_gib": max(serve_["rss_after_day"]["peak_rss_mb"], lazy["rss_after_touch"]["peak_rss_mb"])
        < TARGETS["rss_mb"],
        "restore_under_30_s": lazy["restore_s"] < TARGETS["restore_s"],
        "predict_within_20_pct_of_single_models": serve_["predict_1_row_ratio_vs_single_mixture"]
        >= TARGETS["predict_ratio"],
    }
    if "http" in figures:
        figures["targets"]["http_predict_within_20_pct_of_single_models"] = (
            figures["http"]["predict_1_row_ratio_vs_single_mixture"] >= TARGETS["predict_ratio"])
    print(json.dumps({"targets": figures["targets"]}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keyed", description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=None, help="products (default 30,490)")
    parser.add_argument("--warm-days", type=int, default=28,
                        help="days each product learns offline (28 fills the KNN windows)")
    parser.add_argument("--lru-keys", type=int, default=5000, help="keys in memory in bounded-memory mode")
    parser.add_argument("--http", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure through seldon-core-microservice (default: inside the test netns)")
    parser.add_argument("--out", help="write the figures to this JSON file")
    parser.add_argument("--sharded", action="store_true",
                        help=f"measure 1, 2 and 4 shards (default {SHARDED_KEYS} products); merged into --out")
    parser.add_argument("--phase", choices=["serve", "lazy", "preload", "lru", "shard"], help=argparse.SUPPRESS)
    parser.add_argument("--shards", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        # One phase in this fresh process (clean RSS); the result is the last line of stdout.
        from model_wrappers.synthetic import M5_PRODUCTS

        keys = args.keys or M5_PRODUCTS
        workdir = Path(args.workdir)
        if args.phase == "shard":
            result = shard(workdir, args.keys, args.warm_days, args.shards, args.shard)
        elif args.phase == "serve":
            result = serve(workdir, keys, args.warm_days)
        else:
            result = restore(workdir, args.phase, keys, args.lru_keys)
        print(json.dumps(result))
        return 0
    if args.sharded:
        # Its own key in the results file the keyed figures are in; the other sections stay.
        path = Path(args.out) if args.out else None
        out = json.loads(path.read_text()) if path and path.exists() else {}
        sharded(out, keys=args.keys or SHARDED_KEYS, warm_days=args.warm_days)
        if path:
            path.write_text(json.dumps(out, indent=1, default=str) + "\n")  # as benchmarks.run writes it
        return 0
    out: dict = {}
    run(out, keys=args.keys, warm_days=args.warm_days, lru_keys=args.lru_keys, with_http=args.http)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

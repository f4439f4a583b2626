"""Real Apache Kafka brokers (KRaft mode) on 127.0.0.1, from the jars ``scripts/kafka.sh`` caches.

Used by the tests and the benchmarks alike: :class:`KafkaCluster` formats each node's storage
and starts ``kafka.Kafka`` on the machine's Java, one process per node, each node both broker
and controller. Every message is fsynced before it is acknowledged
(``log.flush.interval.messages=1``), so one broker alone keeps what it acknowledged across a
``kill -9``; with three nodes topics are made with replication factor 3 and
``min.insync.replicas=2``.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from model_wrappers.local.ports import free_port

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "kafka.sh"
HEAP = "-Xmx256m"
QUIET = logging.getLogger(__name__ + ".probe")  # a node that is still starting refuses connections
QUIET.setLevel(logging.CRITICAL)
QUIET.propagate = False

LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
"""


def classpath(fetch: bool = True) -> str:
    """The broker's class path; fetches the jars first (through Maven) when they are missing."""
    path = subprocess.run(["bash", str(SCRIPT), "classpath"], check=True, capture_output=True,
                          text=True).stdout.strip()
    if not list(Path(path).parent.glob("kafka_2.13-*.jar")):
        if not fetch:
            raise FileNotFoundError(f"no Kafka jars in {Path(path).parent}: run bash scripts/kafka.sh ensure")
        subprocess.run(["bash", str(SCRIPT), "ensure"], check=True)
    return path


class KafkaCluster:
    """``nodes`` Kafka processes on 127.0.0.1 forming one KRaft cluster, data under ``workdir``.

    Parameters
    ----------
    workdir
        Each node keeps its data, configuration and log in ``workdir/node-<id>``.
    nodes
        1 (a single broker) or 3 (replication factor 3, ``min.insync.replicas=2``).

    Examples
    --------
    >>> cluster = KafkaCluster("/tmp/kafka-demo", nodes=1)  # doctest: +SKIP
    >>> cluster.start().bootstrap  # doctest: +SKIP
    '127.0.0.1:40123'
    >>> cluster.stop()  # doctest: +SKIP

    """

    def __init__(self, workdir: str | os.PathLike, nodes: int = 1):
        self.workdir = Path(workdir)
        self.ids = list(range(1, nodes + 1))
        self.ports = {i: free_port() for i in self.ids}
        self.controller_ports = {i: free_port() for i in self.ids}
        self.procs: dict[int, subprocess.Popen] = {}
        self.cluster_id = _cluster_id()
        self._classpath = ""

    @property
    def replication(self) -> int:
        return 3 if len(self.ids) >= 3 else 1

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.ports[i]}" for i in self.ids)

    def uri(self, path: str = "") -> str:
        """The ``state_uri`` of a learning log on this cluster."""
        query = f"?replication={self.replication}" if self.replication > 1 else ""
        return f"kafka://{self.bootstrap}/{path}{query}"

    def node_dir(self, node: int) -> Path:
        return self.workdir / f"node-{node}"

    def _properties(self, node: int) -> str:
        rf = self.replication
        voters = ",".join(f"{i}@127.0.0.1:{self.controller_ports[i]}" for i in self.ids)
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={node}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.ports[node]},CONTROLLER://127.0.0.1:{self.controller_ports[node]}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.ports[node]}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.node_dir(node) / 'data'}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            f"offsets.topic.replication.factor={rf}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min(rf, 2)}",
            f"min.insync.replicas={min(rf, 2)}",
            f"default.replication.factor={rf}",
            # fsync every message before it counts as written: one broker keeps what it acknowledged.
            "log.flush.interval.messages=1",
            "unclean.leader.election.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "log.cleaner.dedupe.buffer.size=4194304",
            "log.cleaner.threads=1",
            "num.network.threads=2",
            "num.io.threads=2",
            "background.threads=2",
            "num.recovery.threads.per.data.dir=1",
            "message.max.bytes=67108864",
            "replica.fetch.max.bytes=67108864",
            "replica.lag.time.max.ms=5000",
            # A lost broker is noticed (and its partitions get new leaders) within seconds.
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=500",
            "",
        ])

    def _java(self, *args: str, log: Path | None = None) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise FileNotFoundError("java not found on PATH: the Kafka broker runs on the machine's Java (17+)")
        config = [f"-Dlog4j2.configurationFile={log}"] if log else ["-Dlog4j2.level=warn"]
        return [java, HEAP, "-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true", *config,
                "-cp", self._classpath, *args]

    def start(self, timeout: float = 90.0) -> "KafkaCluster":
        self._classpath = classpath()
        for node in self.ids:
            folder = self.node_dir(node)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "server.properties").write_text(self._properties(node))
            (folder / "log4j2.properties").write_text(LOG4J.format(log=folder / "broker.log"))
            if not (folder / "data" / "meta.properties").exists():
                subprocess.run(self._java("kafka.tools.StorageTool", "format", "--ignore-formatted",
                                          "-t", self.cluster_id, "-c", str(folder / "server.properties")),
                               check=True, capture_output=True, timeout=120)
        for node in self.ids:
            self.start_node(node, wait=False)
        self.wait_ready(timeout)
        return self

    def start_node(self, node: int, wait: bool = True, timeout: float = 90.0) -> None:
        folder = self.node_dir(node)
        out = open(folder / "stdout.log", "ab")
        self.procs[node] = subprocess.Popen(
            self._java("kafka.Kafka", str(folder / "server.properties"), log=folder / "log4j2.properties"),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        if wait:
            self.wait_ready(timeout, nodes=[node])

    def wait_ready(self, timeout: float = 90.0, nodes: list[int] | None = None) -> None:
        """Until every node (or those named) is a broker of the cluster that the others see."""
        from confluent_kafka.admin import AdminClient

        wanted = set(nodes or [i for i in self.ids if self.alive(i)])
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for node, proc in self.procs.items():
                if node in wanted and proc.poll() is not None:
                    raise RuntimeError(f"Kafka node {node} exited with {proc.returncode}: {self.tail(node)}")
            try:
                for node in wanted:
                    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.ports[node]}", "logger": QUIET})
                    brokers = admin.list_topics(timeout=2).brokers
                    if not wanted <= set(brokers):
                        raise RuntimeError(f"node {node} sees brokers {sorted(brokers)}")
                return
            except Exception as exc:  # noqa: BLE001 - still starting
                last = exc
                time.sleep(0.5)
        raise TimeoutError(f"Kafka nodes {sorted(wanted)} not ready after {timeout:g} s ({last}): "
                           f"{self.tail(min(wanted))}")

    def alive(self, node: int) -> bool:
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def tail(self, node: int, lines: int = 20) -> str:
        text = ""
        for name in ("stdout.log", "broker.log"):
            path = self.node_dir(node) / name
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def kill9(self, node: int) -> None:
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def stop_node(self, node: int) -> None:
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9(node)

    def stop(self) -> None:
        for node in self.ids:
            self.kill9(node)

    def version(self) -> str:
        return Path(self._classpath or classpath(fetch=False)).parent.parent.name


def _cluster_id() -> str:
    """A random cluster id as Kafka makes them: 16 bytes in URL-safe base64, never starting with
    "-" (the storage tool would read it as an option)."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not found.startswith("-"):
            return found

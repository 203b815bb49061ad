"""A private, real Apache Kafka broker for fault tests: they stop and start it at will, which
they must never do to the shared broker the rest of the suite uses."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("UNION_CACHE_DIR", REPO / ".cache"))
KAFKA_LIB = CACHE / "kafka-4.1.2" / "lib"
CONFIG = REPO / "deploy" / "local" / "kafka"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateKafka:
    def __init__(self) -> None:
        if not (KAFKA_LIB / ".complete").exists():
            raise RuntimeError(
                f"Kafka jars missing in {KAFKA_LIB}: run `deploy/local/infra.sh fetch-kafka` "
                "(make test does this)"
            )
        self.port, self.controller_port = free_port(), free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="private-kafka-"))
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        props = (CONFIG / "server.properties.in").read_text()
        props = props.replace("@LOG_DIR@", str(self.dir / "data"))
        props = props.replace("9092", str(self.port)).replace("9093", str(self.controller_port))
        props += "\nnum.partitions=1\n"
        self.props = self.dir / "server.properties"
        self.props.write_text(props)
        self._java = ["java", "-Xms128m", "-Xmx384m", "-cp", f"{KAFKA_LIB}/*"]
        subprocess.run(
            [
                *self._java,
                f"-Dlog4j2.configurationFile={CONFIG / 'log4j2-tools.properties'}",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                uuid.uuid4().hex[:22],
                "-c",
                str(self.props),
                "--standalone",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self, timeout: float = 90.0) -> None:
        log = (self.dir / "kafka.log").open("ab")
        self.proc = subprocess.Popen(
            [
                *self._java,
                f"-Dlog4j2.configurationFile={CONFIG / 'log4j2.properties'}",
                "kafka.Kafka",
                str(self.props),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"private Kafka exited; see {self.dir / 'kafka.log'}")
            if "Kafka Server started" in (self.dir / "kafka.log").read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise RuntimeError("private Kafka did not start in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        # Forget the "started" line so that the next start() waits for a fresh one.
        log = self.dir / "kafka.log"
        log.rename(self.dir / f"kafka.{time.time_ns()}.log")

    def close(self) -> None:
        """Stop for good and remove its data and logs: each broker is a few MB in /tmp, and the
        suite starts several on every run."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

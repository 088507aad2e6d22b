"""A Redis (append-only file) and a PostgreSQL cluster of the fault tests' own, on free ports, that the
tests may kill and restart: the machine's shared instances are never touched."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cli.stack import free_port


def _wait(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not up after {timeout_s:.0f}s")


@dataclass
class OwnRedis:
    """``appendfsync always``: every write is on disk before Redis answers, so a SIGKILL loses nothing
    a client was told had happened."""

    folder: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        server = shutil.which("redis-server")
        assert server, "redis-server is needed"
        argv = [server, "--port", str(self.port), "--dir", str(self.folder), "--appendonly", "yes",
                "--appendfsync", "always", "--save", ""]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self._answers, 30, "redis")
        return self

    def _answers(self) -> bool:
        cli = shutil.which("redis-cli") or "redis-cli"
        ping = [cli, "-p", str(self.port), "ping"]
        return subprocess.run(ping, capture_output=True, text=True, check=False).stdout.strip() == "PONG"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    assert found[-1], f"{name} (PostgreSQL server binaries) is needed"
    return found[-1]


@dataclass
class OwnPostgres:
    """``initdb`` + ``pg_ctl`` in a temporary folder, as the ``postgres`` user when we are root."""

    port: int = field(default_factory=free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pop-faults-pg-", dir="/tmp")))

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> OwnPostgres:
        data = self.folder / "data"
        if not data.exists():
            if os.geteuid() == 0:
                shutil.chown(self.folder, "postgres", "postgres")
            self._run(_postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run(
            _postgres_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.folder / "log"), "-w", "start"
        )
        return self

    def restart(self) -> None:
        """``immediate``: the server dies without a checkpoint, like a crash, and recovers from its WAL."""
        data = str(self.folder / "data")
        self._run(_postgres_bin("pg_ctl"), "-D", data, "-m", "immediate", "stop")
        self.start()

    def stop(self) -> None:
        try:
            self._run(_postgres_bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

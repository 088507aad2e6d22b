"""The whole stack as local processes: Redis (unless REDIS_URL is set), generator, judge, gateway,
producer and trainer, each started with ``python -m services.<name>`` and its own log file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SERVICES = ("generator", "judge", "gateway", "selfplay", "trainer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue += children.get(child, [])
    return found


def wait_http(proc: subprocess.Popen[bytes], url: str, timeout_s: float, name: str, log: Path) -> None:
    """Until ``url`` answers 200; an exited process or the deadline raises, naming the log to read."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{name} not ready after {timeout_s:.0f}s; see {log}")


@dataclass
class StackOptions:
    home: Path = Path(".pop")
    model: str = "pop/smollm2-135m-instruct"
    """The generator's base, and the runs' default: a Hub id, a folder or a ``pop/`` alias."""
    model_revision: str | None = None
    """Branch, tag or commit of a Hub ``model``."""
    # float32: most CPUs have no bf16 units (bf16 measured slower here), and greedy decoding has no ties.
    generator_dtype: str = "float32"
    max_model_len: int = 4096
    redis_url: str | None = field(default_factory=lambda: os.environ.get("REDIS_URL"))
    database_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    api_token: str | None = None
    """When set, the gateway requires it for changes, and the trainer and producer send it."""
    start_timeout_s: float = 600.0
    generators: int = 1
    """Replicas of the training generator: producers and the judge spread requests over them, and the gateway
    swaps all of them (each on its own ports; the first is ``generator``, the others ``generator-2`` ...)."""
    eval_generator: bool = False
    """Also start a second generator for ``/v1/evals`` to swap checkpoints onto (the training one is never
    touched by an eval)."""


class LocalStack:
    def __init__(self, options: StackOptions) -> None:
        self.o = options
        self.home = options.home.resolve()
        self.logs = self.home / "logs"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.replica_names = ["generator", *(f"generator-{i}" for i in range(2, options.generators + 1))]
        names = (*SERVICES, *self.replica_names[1:], "eval-generator")
        self.ports = {name: free_port() for name in names}
        self.admin_ports = {name: free_port() for name in (*self.replica_names, "eval-generator")}
        self.generator_urls = [f"http://127.0.0.1:{self.ports[n]}" for n in self.replica_names]
        """Each replica's inference port (``{url}/v1``: OpenAI routes)."""
        self.generator_admin_urls = [f"http://127.0.0.1:{self.admin_ports[n]}" for n in self.replica_names]
        """Each replica's admin port (swap, hold, policy): the gateway's and the trainer's."""
        self.generator_url, self.generator_admin_url = self.generator_urls[0], self.generator_admin_urls[0]
        self.judge_url = f"http://127.0.0.1:{self.ports['judge']}"
        self.gateway_url = f"http://127.0.0.1:{self.ports['gateway']}"
        self.eval_generator_url = f"http://127.0.0.1:{self.ports['eval-generator']}" if options.eval_generator else None
        self.eval_generator_admin_url = (
            f"http://127.0.0.1:{self.admin_ports['eval-generator']}" if options.eval_generator else None
        )
        self.redis_url = options.redis_url or ""
        self.checkpoint_dir = self.home / "checkpoints"
        self.run_defaults = self.home / "run-defaults.yaml"
        """A run that names no model trains the one the generator serves (unless the user has defaults)."""

    def env(self) -> dict[str, str]:
        db = self.o.database_url or f"sqlite+aiosqlite:///{self.home}/gateway.db"
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",  # HF_HOME, HF_HUB_OFFLINE and HF_TOKEN: the user's, passed through
            "REDIS_URL": self.redis_url,
            "POP_GENERATOR_PORT": str(self.ports["generator"]),
            "POP_GENERATOR_ADMIN_PORT": str(self.admin_ports["generator"]),
            # A fleet's replicas take work only once the gateway has brought them to the fleet's version.
            "POP_GENERATOR_WAIT_FOR_FLEET": "true" if self.o.generators > 1 else "false",
            "POP_GENERATOR_MODEL": self.o.model,
            **({"POP_GENERATOR_MODEL_REVISION": self.o.model_revision} if self.o.model_revision else {}),
            "POP_GENERATOR_DTYPE": self.o.generator_dtype,
            "POP_GENERATOR_MAX_MODEL_LEN": str(self.o.max_model_len),
            "POP_GENERATOR_CHECKPOINT_ROOT": str(self.checkpoint_dir),
            "POP_JUDGE_PORT": str(self.ports["judge"]),
            "POP_JUDGE_LLM_BASE_URL": ",".join(f"{u}/v1" for u in self.generator_urls),
            "POP_GATEWAY_PORT": str(self.ports["gateway"]),
            "POP_GATEWAY_DATABASE_URL": db,
            "POP_GATEWAY_GENERATOR_URL": ",".join(self.generator_admin_urls),
            "POP_GATEWAY_JUDGE_URL": self.judge_url,
            "POP_GATEWAY_EVAL_DIR": str(self.home / "evals"),
            "POP_GATEWAY_RUN_DEFAULTS": os.environ.get("POP_GATEWAY_RUN_DEFAULTS", str(self.run_defaults)),
            **self._eval_generator_env(),
            # Local teachers and external judges live on this machine.
            "POP_GATEWAY_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "POP_JUDGE_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "POP_SELFPLAY_PORT": str(self.ports["selfplay"]),
            "POP_SELFPLAY_GATEWAY_URL": self.gateway_url,
            "POP_SELFPLAY_GENERATOR_URL": ",".join(self.generator_urls),
            "POP_SELFPLAY_JUDGE_URL": self.judge_url,
            "POP_TRAINER_PORT": str(self.ports["trainer"]),
            "POP_TRAINER_GATEWAY_URL": self.gateway_url,
            "POP_TRAINER_CHECKPOINT_DIR": str(self.checkpoint_dir),
            # Served versions in the dtype the generator serves: no rounding the generator would not do.
            "POP_TRAINER_SERVED_DTYPE": self.o.generator_dtype,
            # One machine: the trainer's updates get the cores while generation is held (on every replica).
            "POP_TRAINER_COLOCATED_GENERATOR_URL": ",".join(self.generator_admin_urls),
            **self._token_env(),
            **self.o.extra_env,
        }

    def _eval_generator_env(self) -> dict[str, str]:
        if not (self.eval_generator_url and self.eval_generator_admin_url):
            return {}
        return {
            "POP_GATEWAY_EVAL_GENERATOR_URL": self.eval_generator_admin_url,
            "POP_GATEWAY_EVAL_GENERATOR_INFERENCE_URL": self.eval_generator_url,
        }

    def _token_env(self) -> dict[str, str]:
        token = self.o.api_token
        if not token:
            return {}
        return {
            "POP_GATEWAY_API_TOKENS": token,
            "POP_TRAINER_GATEWAY_TOKEN": token,
            "POP_SELFPLAY_GATEWAY_TOKEN": token,
        }

    def _spawn(self, name: str, argv: list[str], **env: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        own = self._replica_env(name) if name in self.admin_ports else {}
        self.procs[name] = subprocess.Popen(
            argv, env={**self.env(), **own, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _replica_env(self, name: str) -> dict[str, str]:
        """A generator's own ports (a replica or the eval generator), also when it is respawned."""
        env = {"POP_GENERATOR_PORT": str(self.ports[name]), "POP_GENERATOR_ADMIN_PORT": str(self.admin_ports[name])}
        if name == "eval-generator":
            env["POP_GENERATOR_WAIT_FOR_FLEET"] = "false"
        return env

    def _wait_http(self, name: str, url: str) -> None:
        wait_http(self.procs[name], url, self.o.start_timeout_s, name, self.logs / f"{name}.log")

    def _start_redis(self) -> None:
        if self.redis_url:
            return
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("REDIS_URL is unset and no redis-server is installed")
        port = free_port()
        self._spawn("redis", [server, "--port", str(port), "--save", "", "--appendonly", "no"])
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.3)

    def start(self) -> LocalStack:
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        defaults: dict[str, str] = {"model": self.o.model}
        if self.o.model_revision:
            defaults["model_revision"] = self.o.model_revision
        self.run_defaults.write_text(json.dumps(defaults) + "\n")  # JSON is YAML
        self._start_redis()
        for name in self.replica_names:
            self._spawn(name, [sys.executable, "-m", "services.generator"])
        if self.eval_generator_url:
            self._spawn("eval-generator", [sys.executable, "-m", "services.generator"])
        self._spawn("gateway", [sys.executable, "-m", "services.gateway"])
        self._wait_http("gateway", f"{self.gateway_url}/healthz")
        for name, url in zip(self.replica_names, self.generator_urls, strict=True):
            self._wait_http(name, f"{url}/readyz")
        if self.eval_generator_url:
            self._wait_http("eval-generator", f"{self.eval_generator_url}/readyz")
        self._spawn("judge", [sys.executable, "-m", "services.judge"])
        self._wait_http("judge", f"{self.judge_url}/healthz")
        self._spawn("selfplay", [sys.executable, "-m", "services.selfplay"])
        self._spawn("trainer", [sys.executable, "-m", "services.trainer"])
        for name in ("selfplay", "trainer"):  # their ops endpoints: up once the process serves
            self._wait_http(name, f"http://127.0.0.1:{self.ports[name]}/healthz")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Kill one service outright (fault tests); ``respawn`` starts it again. A trainer under torchrun
        goes with its ranks, which torchrun starts in sessions of their own (outside its process group)."""
        proc = self.procs[name]
        ranks = descendants(proc.pid)
        os.killpg(proc.pid, sig)
        proc.wait()
        for pid in ranks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def respawn(self, name: str, ranks: int = 1) -> None:
        """Start a killed service again; ``ranks`` > 1 starts the trainer data parallel under torchrun."""
        launcher = [sys.executable, "-m"]
        if ranks > 1:
            if name != "trainer":
                raise ValueError("only the trainer runs data parallel")
            launcher += ["torch.distributed.run", f"--nproc_per_node={ranks}", f"--master_port={free_port()}", "-m"]
        module = "generator" if name in self.admin_ports else name  # a replica or the eval generator
        self._spawn(name, [*launcher, f"services.{module}"])

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill(name)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

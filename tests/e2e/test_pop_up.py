"""``pop up --model org/name``: the local stack serving a Hub model by name (the tiny model planted in a
Hugging Face cache, offline), driven through the CLI as a user would. Small on purpose, two steps of
four short answers on a programmatic rubric: tests/e2e/test_selfplay_loop.py covers the loop in depth."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from cli.__main__ import app as cli

pytestmark = pytest.mark.e2e

MODEL = "org/tiny"
# No ``model``: `pop up --model` makes it the runs' default. The brief criterion splits the tiny
# model's groups (its 24-token answers have a median of ~13 words), so every group carries a signal.
RUN = {
    "name": "pop-up",
    "selfplay": {
        "group_size": 4, "max_task_chars": 120, "max_reference_chars": 120, "max_answer_tokens": 24,
        "concurrency": 1, "task_mix": {"long_form_qa": 1},
    },
    "judge": {"write_rubric": False, "extra_criteria": [
        {"name": "brief", "weight": 2, "check": {"type": "word_count", "min_words": 1, "max_words": 13}},
    ]},
    "trainer": {"algorithm": {"name": "dpo", "beta": 0.1}, "learning_rate": 1e-3, "max_steps": 2, "groups_per_step": 1},
}  # fmt: skip
PROBE = {
    "model": "policy",
    "messages": [{"role": "user", "content": "Describe the heart in one sentence."}],
    "max_tokens": 8,
    "temperature": 0.0,
    "logprobs": True,
}


def probe(generator_url: str) -> tuple[str, list[float]]:
    choice = httpx.post(f"{generator_url}/v1/chat/completions", json=PROBE, timeout=60).json()["choices"][0]
    return choice["message"]["content"], [t["logprob"] for t in choice["logprobs"]["content"]]


def started_urls(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, str]:
    """The URLs ``pop up`` prints once every service is ready: ``generator URL (admin URL)`` for each replica,
    then ``gateway URL · judge URL``."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
    deadline, seen, urls = time.monotonic() + timeout_s, [], dict[str, str]()
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        seen.append(line)
        if line.startswith("generator http") and "generator" not in urls:
            words = line.replace("(", " ").replace(")", " ").split()
            urls |= {"generator": words[1], "generator-admin": words[3]}
        if line.startswith("gateway http"):
            words = line.replace("·", " ").split()
            return urls | dict(zip(words[::2], words[1::2], strict=True))
    pytest.fail(f"`pop up` printed no URLs (exit {proc.poll()}): {''.join(seen)[-2000:]}")


@pytest.mark.timeout(900)
def test_pop_up_serves_a_hub_model_by_name(redis_url: str, hub_home: Path, tmp_path: Path):
    env = {**os.environ, "HF_HOME": str(hub_home), "REDIS_URL": redis_url, "COLUMNS": "300"}
    env.pop("POP_GATEWAY_TOKEN", None)
    env.pop("POP_GATEWAY_RUN_DEFAULTS", None)
    argv = [sys.executable, "-m", "cli", "up", "--model", MODEL, "--home", str(tmp_path / "pop")]
    out = subprocess.PIPE
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        urls = started_urls(proc, timeout_s=600)
        gateway, generator, admin = urls["gateway"], urls["generator"], urls["generator-admin"]
        repo = hub_home / "hub" / "models--org--tiny"
        snapshot = str((repo / "snapshots" / (repo / "refs" / "main").read_text()).resolve())
        # The generator serves the snapshot the name resolves to, and its files are the cache's links into blobs/.
        assert httpx.get(f"{generator}/v1/models", timeout=10).json()["data"][0]["root"] == snapshot
        base_text, base_logprobs = probe(generator)

        runner, gw = CliRunner(), ["--gateway", gateway]
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump(RUN))
        started = runner.invoke(cli, ["run", "start", str(config), *gw])
        assert started.exit_code == 0, started.output
        run_id = started.output.strip().splitlines()[-1]
        deadline = time.monotonic() + 600
        while (run := httpx.get(f"{gateway}/v1/runs/{run_id}", timeout=10).json())["status"] in ("pending", "running"):
            assert time.monotonic() < deadline and proc.poll() is None, f"run not done in 600 s: {run}"
            time.sleep(1.0)
        assert run["status"] == "completed", run.get("error")
        assert run["config"]["model"] == MODEL and [s["policy_version"] for s in run["steps"]] == [1, 2]
        served = httpx.get(f"{admin}/v1/policy", timeout=10).json()
        assert (served["version"], served["run_id"]) == (2, run_id)  # each update was swapped in
        assert probe(generator)[1] != base_logprobs

        back = runner.invoke(cli, ["rollback", run_id, "--version", "0", *gw])
        assert back.exit_code == 0 and f"serves v0 of run {run_id}" in back.output, back.output
        served = httpx.get(f"{admin}/v1/policy", timeout=10).json()
        assert (served["version"], served["run_id"], served["checkpoint_path"]) == (0, run_id, snapshot)
        text, logprobs = probe(generator)
        assert text == base_text and logprobs == pytest.approx(base_logprobs, abs=1e-5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: `pop up` stops its services
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

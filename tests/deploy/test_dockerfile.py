"""The Dockerfile lints clean (hadolint) and its targets are the services: entry point, port, health path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.deploy.tools import run, tool
from tests.deploy.truth import DATA, ROOT, SERVICES, entry_point_exists, health_url_problem

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def targets() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for op, args in instructions():
        if op == "FROM":
            current = found.setdefault(args.split()[-1], [])
        current.append((op, args))
    return found


def test_hadolint_passes():
    result = run([tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_as_a_numeric_non_root_user():
    users = [args for op, args in targets()["base"] if op == "USER"]
    assert users and all(re.fullmatch(r"[1-9]\d*:[1-9]\d*", u) for u in users)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_target_is_its_service(name: str):
    stage, truth = dict((op, args) for op, args in targets()[name]), SERVICES[name]
    assert stage["FROM"].split()[0] == "base"
    assert json.loads(stage["CMD"]) == truth.command and entry_point_exists(truth.command)
    assert stage["EXPOSE"] == str(truth.port)
    health = json.loads(stage["HEALTHCHECK"].split("CMD", 1)[1])
    assert health[:2] == ["curl", "-fs"] and health_url_problem(truth, health[2]) is None


def test_the_ignore_file_keeps_state_and_models_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".pop", "models", ".git"} <= ignored


def test_the_hub_cache_is_on_the_volume_and_offline_is_not_forced():
    base = targets()["base"]
    env = dict(pair.split("=", 1) for op, args in base if op == "ENV" for pair in args.split())
    assert "HF_HUB_OFFLINE" not in env and "HF_TOKEN" not in env  # the user's choice, the user's secret
    assert [op_args for op, op_args in base if op == "VOLUME"] == [str(DATA)]
    for variable in ("HF_HOME", "VLLM_CACHE_ROOT"):
        assert Path(env[variable]).is_relative_to(DATA), variable
    # created in the image and owned by its user, so a fresh volume is writable by it
    run_lines = " ".join(args for op, args in base if op == "RUN")
    assert (
        f"mkdir -p {env['HF_HOME']} {env['VLLM_CACHE_ROOT']}" in run_lines and f"chown -R pop:pop {DATA}" in run_lines
    )

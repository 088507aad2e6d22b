"""docker-compose.yml resolves (Debian's docker-compose, offline) in both profiles, and agrees with the
services' entry points, ports, variables and health paths."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import run, tool
from tests.deploy.truth import (
    DATA,
    MODEL_RESOLVERS,
    ROOT,
    SERVICES,
    entry_point_exists,
    env_problem,
    health_url_problem,
)

COMPOSE = ROOT / "docker-compose.yml"
# Each service of ours in compose, and the profile that runs it (None: every profile).
VARIANTS = {
    "generator": ("generator", "cpu"),
    "generator-gpu": ("generator", "gpu"),
    "eval-generator": ("generator", "eval"),
    "judge": ("judge", None),
    "gateway": ("gateway", None),
    "selfplay": ("selfplay", None),
    "trainer": ("trainer", "cpu"),
    "trainer-gpu": ("trainer", "gpu"),
}


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return loaded


@pytest.mark.parametrize("profile", ["cpu", "gpu", "eval"])
def test_the_compose_file_resolves(profile: str):
    result = run([tool("docker-compose"), "--profile", profile, "config", "-q"], ROOT)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(run([tool("docker-compose"), "--profile", profile, "config"], ROOT).stdout)
    running = {name for name, s in resolved["services"].items() if profile in s.get("profiles", [profile])}
    expected = {n for n, (_, p) in VARIANTS.items() if p in (None, profile)} | {"redis", "postgres"}
    assert running == expected


def test_the_default_profile_is_the_cpu_stack():
    assert "COMPOSE_PROFILES=cpu" in (ROOT / ".env").read_text().splitlines()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_service_matches_its_code(variant: str):
    service, profile = VARIANTS[variant]
    spec, truth = services()[variant], SERVICES[service]
    assert spec.get("profiles", [None]) == [profile]
    assert spec["build"]["target"] == service  # the Dockerfile target's CMD is the entry point
    assert entry_point_exists(truth.command)
    assert str(truth.port) in [*spec.get("expose", []), *[p.split(":")[-1] for p in spec.get("ports", [])]]
    if truth.admin_port:  # reachable inside the stack, published to no one
        assert str(truth.admin_port) in spec["expose"] and not spec.get("ports")
    assert health_url_problem(truth, spec["healthcheck"]["test"][-1]) is None
    problems = [p for name in spec["environment"] if (p := env_problem(name))]
    assert not problems


def test_the_gpu_profile_gives_the_generator_and_trainer_a_gpu():
    for variant in ("generator-gpu", "trainer-gpu"):
        spec = services()[variant]
        devices = spec["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        assert spec["build"]["args"]["STACK"] == "gpu"
    assert "generator" in services()["generator-gpu"]["networks"]["default"]["aliases"]


def test_redis_persists_and_services_wait_for_what_they_need():
    spec = services()
    assert "--appendonly" in spec["redis"]["command"]
    assert spec["gateway"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in ("selfplay", "trainer", "trainer-gpu"):
        assert spec[name]["depends_on"]["gateway"] == {"condition": "service_healthy"}
    checkpoints = {v for name in VARIANTS for v in spec[name]["volumes"]}
    assert checkpoints == {"pop-data:/data"}  # one shared volume: the trainer writes, the generator reads


def compose_config(env: dict[str, str], *profiles: str) -> dict[str, Any]:
    """The resolved services under exactly ``env`` (this test session's own HF_HUB_OFFLINE left out)."""
    argv = [tool("docker-compose"), *(f for p in profiles for f in ("--profile", p)), "config"]
    env = {"PATH": os.environ["PATH"], **env}
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    return resolved


def test_model_resolvers_share_the_hub_cache_and_get_the_users_token_and_offline_choice():
    """HF_HOME and vLLM's cache on the shared volume; HF_TOKEN and HF_HUB_OFFLINE from the shell (or .env),
    never forced, and only to the services that resolve model names."""
    shell = {"HF_TOKEN": "hf_from-the-shell", "HF_HUB_OFFLINE": "1", "POP_MODEL": "org/name"}
    resolved = compose_config(shell, "cpu", "gpu", "eval")
    for variant, (service, _) in VARIANTS.items():
        environment = resolved[variant]["environment"]
        if service in MODEL_RESOLVERS:
            for variable in ("HF_HOME", "VLLM_CACHE_ROOT"):
                assert Path(environment[variable]).is_relative_to(DATA), (variant, variable)
            assert environment["HF_TOKEN"] == "hf_from-the-shell" and environment["HF_HUB_OFFLINE"] == "1", variant
        else:
            assert "HF_TOKEN" not in environment, variant
        assert environment["POP_GENERATOR_MODEL"] == "org/name"
    unset = compose_config({}, "cpu")["generator"]["environment"]
    assert unset["HF_HUB_OFFLINE"] in ("", None) and unset["HF_TOKEN"] in ("", None)  # online, no token

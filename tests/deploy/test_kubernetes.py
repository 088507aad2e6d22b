"""Every overlay renders (kubectl kustomize, offline), validates against the Kubernetes schemas, and its
workloads agree with the services' entry points, ports, variables and health paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from benchmarks import memory
from shared.config import RunConfig
from tests.deploy.tools import run, tool
from tests.deploy.truth import DATA, MODEL_RESOLVERS, ROOT, SERVICES, entry_point_exists, env_problem, service_module

OVERLAYS = ("cpu-dev", "gpu", "gpu-fsdp", "external-judge")
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
Doc = dict[str, Any]


def render(overlay: str) -> list[Doc]:
    result = run([tool("kubectl"), "kustomize", str(ROOT / "deploy" / "overlays" / overlay)], ROOT)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def workloads(docs: list[Doc]) -> dict[str, Doc]:
    """Our services' pods by service name, told by the command they run."""
    found = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            module = service_module(doc["spec"]["template"]["spec"]["containers"][0].get("command", []))
            if module is not None:
                found[module.removeprefix("services.")] = doc
    return found


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, render(request.param)


def test_manifests_validate_against_the_kubernetes_schemas(rendered: tuple[str, list[Doc]]):
    _, docs = rendered
    for version in KUBERNETES_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_a_broken_manifest_is_caught():
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)


def test_workloads_match_the_services_code(rendered: tuple[str, list[Doc]]):
    _, docs = rendered
    pods = workloads(docs)
    assert set(pods) == set(SERVICES)
    config, secret = find(docs, "ConfigMap", "pop-config")["data"], find(docs, "Secret", "pop-secrets")
    variables = [*config, *secret["stringData"]]
    assert not [p for name in variables if (p := env_problem(name))]
    for name, doc in pods.items():
        truth, pod = SERVICES[name], doc["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert entry_point_exists(container["command"])
        assert container["ports"][0]["containerPort"] == truth.port
        assert [p["containerPort"] for p in container["ports"][1:]] == ([truth.admin_port] if truth.admin_port else [])
        assert not [p for e in container.get("env", []) if (p := env_problem(e["name"]))]
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] == truth.port and get["path"] in truth.paths, (name, probe, get)
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
        assert container["resources"]["requests"]
        services = [d for d in docs if d["kind"] == "Service" and d["spec"].get("selector") == {"app": name}]
        assert all(p["port"] == truth.port for s in services for p in s["spec"]["ports"] if p["name"] != "admin")
        if truth.admin_port:  # control on a Service of its own, the inference Service without it
            admin = [p for s in services for p in s["spec"]["ports"] if p["name"] == "admin"]
            assert [p["port"] for p in admin] == [truth.admin_port]
            assert all(len(s["spec"]["ports"]) == 1 for s in services)


def test_run_defaults_are_a_valid_run_config_on_the_generators_model(rendered: tuple[str, list[Doc]]):
    _, docs = rendered
    defaults = RunConfig.model_validate(
        yaml.safe_load(find(docs, "ConfigMap", "pop-run-defaults")["data"]["run-defaults.yaml"])
    )
    assert defaults.model == find(docs, "ConfigMap", "pop-config")["data"]["POP_GENERATOR_MODEL"]
    gateway = find(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    mounted = {v["name"]: v for v in gateway["volumes"]}["run-defaults"]["configMap"]["name"]
    assert mounted == "pop-run-defaults"


def test_model_resolvers_share_the_hub_cache_and_an_optional_token(rendered: tuple[str, list[Doc]]):
    """HF_HOME and vLLM's cache on the shared volume; HF_TOKEN from a Secret the deployment may lack (the
    pods still start), given only to the services that resolve model names; offline is not forced."""
    _, docs = rendered
    config = find(docs, "ConfigMap", "pop-config")["data"]
    assert config.get("HF_HUB_OFFLINE", "0") in ("0", "")
    for variable in ("HF_HOME", "VLLM_CACHE_ROOT"):
        assert Path(config[variable]).is_relative_to(DATA), variable
    for name, doc in workloads(docs).items():
        pod = doc["spec"]["template"]["spec"]
        container = pod["containers"][0]
        tokens = [e for e in container.get("env", []) if e["name"] == "HF_TOKEN"]
        if name not in MODEL_RESOLVERS:
            assert not tokens, name
            continue
        assert tokens == [
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "pop-hf-token", "key": "HF_TOKEN", "optional": True}},
            }
        ], name
        assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "pop-hf-token"]
        assert {"name": "data", "mountPath": str(DATA)} in container["volumeMounts"], name
        assert pod["securityContext"]["fsGroup"] == 10001  # the volume is writable by the image's user


def test_checkpoints_live_on_shared_storage():
    docs = render("cpu-dev")
    claim = find(docs, "PersistentVolumeClaim", "pop-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in ("generator", "trainer", "gateway"):
        volumes = workloads(docs)[name]["spec"]["template"]["spec"]["volumes"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "pop-data"}} in volumes


def test_the_gpu_overlay_puts_the_generator_and_trainer_on_gpus():
    docs = render("gpu")
    for name in ("generator", "trainer"):
        pod = workloads(docs)[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container["image"].endswith(":gpu")
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    config = find(docs, "ConfigMap", "pop-config")["data"]
    assert config["POP_GENERATOR_TENSOR_PARALLEL_SIZE"] == "1"
    assert workloads(docs)["judge"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":cpu")


@pytest.mark.parametrize("overlay, weights, gpus", [("gpu", "lora", 1), ("gpu-fsdp", "full", 4)])
def test_the_gpu_overlays_run_defaults_fit_their_gpus(overlay: str, weights: str, gpus: int):
    """What the overlay trains by default fits 80 GB GPUs by docs/deploy.md's memory model, and the
    deployment serves it: LoRA adapters on the generator, full weights sharded over the trainer's GPUs."""
    docs = render(overlay)
    config = find(docs, "ConfigMap", "pop-config")["data"]
    defaults = RunConfig.model_validate(
        yaml.safe_load(find(docs, "ConfigMap", "pop-run-defaults")["data"]["run-defaults.yaml"])
    )
    trainer = workloads(docs)["trainer"]["spec"]["template"]["spec"]["containers"][0]
    assert defaults.trainer.weight_mode == weights and trainer["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert defaults.trainer.precision == "bf16" and defaults.trainer.gradient_checkpointing
    assert config["POP_GENERATOR_ENABLE_LORA"] == ("true" if weights == "lora" else "false")
    assert config["POP_TRAINER_SERVED_DTYPE"] == config["POP_GENERATOR_DTYPE"] == "bfloat16"
    sharding = "fsdp" if gpus > 1 else "replicate"
    assert config.get("POP_TRAINER_SHARDING", "replicate") == sharding
    if gpus > 1:
        assert trainer["command"][:1] == ["torchrun"] and f"--nproc_per_node={gpus}" in trainer["command"]
    shape = memory.QWEN_7B
    assert defaults.model == "Qwen/Qwen2.5-7B-Instruct"
    assert memory.gpu_bytes(shape, weights, gpus, sharding, memory.Batch()) <= 80 * memory.GB
    claim = find(docs, "PersistentVolumeClaim", "pop-data")["spec"]["resources"]["requests"]["storage"]
    assert int(claim.removesuffix("Gi")) * 2**30 >= memory.volume(shape, weights, defaults.trainer.keep_last)


def test_the_external_judge_overlay_grades_runs_with_it():
    docs = render("external-judge")
    service = find(docs, "Service", "external-judge")
    assert service["spec"]["type"] == "ExternalName"
    defaults = yaml.safe_load(find(docs, "ConfigMap", "pop-run-defaults")["data"]["run-defaults.yaml"])
    assert RunConfig.model_validate(defaults).judge.url == "http://external-judge:8100"
    allowed = find(docs, "ConfigMap", "pop-config")["data"]["POP_GATEWAY_ALLOWED_HOSTS"].split(",")
    assert "external-judge" in allowed  # the gateway may health-check it

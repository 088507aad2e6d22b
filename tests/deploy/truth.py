"""What the code says each service is: its entry point, default port, environment prefix and fields,
and the GET paths it serves. The deployment files are checked against this, so they cannot drift."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from services.gateway.app import create_app as gateway_app
from services.generator.admin import probes as generator_probes
from services.judge.app import create_app as judge_app
from shared.observability import ops_app
from shared.settings import GatewaySettings, GeneratorSettings, JudgeSettings, SelfPlaySettings, TrainerSettings

ROOT = Path(__file__).resolve().parents[2]
# Read by our code outside the settings classes (each must appear in shared/ or services/).
GLOBAL_ENV = {"REDIS_URL", "DATABASE_URL", "POP_MODELS_DIR", "POP_CACHE_DIR"}
# Read by libraries and images: huggingface_hub, vLLM, and the postgres image's entry point.
HUB_ENV = {"HF_HOME", "HF_HUB_OFFLINE", "HF_TOKEN", "VLLM_CACHE_ROOT"}
FOREIGN_ENV = HUB_ENV | {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "PGDATA"}
DATA = Path("/data")
"""The shared volume's mount point in every image and pod."""


@dataclass(frozen=True)
class Service:
    name: str
    settings: type[BaseSettings]
    paths: frozenset[str]

    @property
    def port(self) -> int:
        return int(self.settings.model_fields["port"].default)

    @property
    def admin_port(self) -> int | None:
        """The control port of a service that has one apart (the generator's), else None."""
        field = self.settings.model_fields.get("admin_port")
        return None if field is None else int(field.default)

    @property
    def prefix(self) -> str:
        return str(self.settings.model_config.get("env_prefix", ""))

    @property
    def command(self) -> list[str]:
        return ["python", "-m", f"services.{self.name}"]


def _get_paths(app: FastAPI) -> frozenset[str]:
    return frozenset(r.path for r in app.routes if "GET" in getattr(r, "methods", ()))


def _services() -> dict[str, Service]:
    ops = _get_paths(ops_app("ops", CollectorRegistry(), {}))
    generator = FastAPI()
    generator.include_router(generator_probes)
    # vLLM's own app serves /health and /metrics beside our probes (the admin routes are on admin_port).
    generator_paths = _get_paths(generator) | {"/health", "/metrics"}
    gateway = _get_paths(gateway_app(GatewaySettings(database_url="sqlite+aiosqlite:///:memory:")))
    found = [
        Service("generator", GeneratorSettings, generator_paths),
        Service("judge", JudgeSettings, _get_paths(judge_app(JudgeSettings()))),
        Service("gateway", GatewaySettings, gateway),
        Service("selfplay", SelfPlaySettings, ops),
        Service("trainer", TrainerSettings, ops),
    ]
    return {s.name: s for s in found}


SERVICES = _services()


def _model_resolvers() -> frozenset[str]:
    """The services whose code resolves model names to files (shared.modeling): each needs the Hub cache
    on the shared volume and the Hub token; the others need neither."""
    uses = {n for n in SERVICES for p in (ROOT / "services" / n).rglob("*.py") if "shared.modeling" in p.read_text()}
    return frozenset(uses)


MODEL_RESOLVERS = _model_resolvers()


LAUNCHERS = ("python", "torchrun")
"""How a pod may start a service: ``python -m services.<name>``, or its ranks under torchrun."""


def service_module(command: list[str]) -> str | None:
    """``services.<name>`` that ``command`` runs (``python -m M`` or ``torchrun [flags] -m M``), else None."""
    if not command or command[0] not in LAUNCHERS or "-m" not in command:
        return None
    rest = command[command.index("-m") + 1 :]
    return rest[0] if len(rest) == 1 and rest[0].startswith("services.") else None


def entry_point_exists(command: list[str]) -> bool:
    module = service_module(command)
    return module is not None and (ROOT / module.replace(".", "/") / "__main__.py").is_file()


def env_problem(name: str) -> str | None:
    """Why ``name`` is no variable any service reads, or None when one does."""
    if name in GLOBAL_ENV:
        code = "\n".join(p.read_text() for d in ("shared", "services") for p in (ROOT / d).rglob("*.py"))
        return None if name in code else f"{name}: read by no code"
    if name in FOREIGN_ENV:
        return None
    for service in SERVICES.values():
        if name.startswith(service.prefix):
            field = service.settings.model_fields.get(name[len(service.prefix) :].lower())
            if field is None:
                return f"{name}: {service.settings.__name__} has no such field"
            names = _env_names(service.prefix + name[len(service.prefix) :].lower(), field.validation_alias)
            return None if name in names else f"{name}: read as {sorted(names)} instead"
    return f"{name}: no service reads it"


def _env_names(prefixed: str, alias: object) -> set[str]:
    """The variables pydantic-settings reads a field from: its aliases when it has them, else prefix + name."""
    if isinstance(alias, AliasChoices):
        return {c.upper() for c in alias.choices if isinstance(c, str)}
    if isinstance(alias, str):
        return {alias.upper()}
    return {prefixed.upper()}


def health_url_problem(service: Service, url: str) -> str | None:
    """``http://localhost:PORT/PATH`` must be the service's own port and a path it serves."""
    match = re.fullmatch(r"https?://(?:localhost|127\.0\.0\.1):(\d+)(/\S*)", url)
    if match is None:
        return f"{service.name}: unexpected health URL {url}"
    port, path = int(match[1]), match[2]
    if port != service.port:
        return f"{service.name}: health check on port {port}, the service listens on {service.port}"
    if path not in service.paths:
        return f"{service.name}: health check on {path}, which it does not serve ({sorted(service.paths)})"
    return None


def shell_words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)

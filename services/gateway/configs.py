"""A run config as the gateway accepts it: parsed from JSON or YAML, validated field by field, its
task types loadable, and its judge (registered by name or given by URL) answering."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import Request
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clients.generator import GeneratorFleet
from shared.clients.http import ServiceError
from shared.clients.judge import JudgeClient
from shared.config import RunConfig
from shared.db import JudgeRecord
from shared.hosts import HostAllowlist
from shared.modeling import ModelError, check_model, local_model
from shared.modeling.signature import SignatureError, describe_mismatch, model_signature
from shared.problems import ProblemError
from shared.schemas import SCHEMA_VERSION
from shared.tasktypes import TaskTypeError, load_task_types

log = logging.getLogger(__name__)

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
JUDGE_CHECK_TIMEOUT_S = 10.0


def invalid(loc: list[str | int], msg: str, kind: str, title: str = "Invalid run config") -> ProblemError:
    errors = [{"loc": loc, "msg": msg, "type": kind}]
    return ProblemError(422, title, f"{'.'.join(map(str, loc))}: {msg}", errors=errors)


def load_defaults(path: Path | None) -> dict[str, Any]:
    """The deployment's run defaults; a file that is no valid run config stops the gateway at start,
    not at the first launch."""
    if path is None:
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: run defaults must be a YAML mapping")
    RunConfig.model_validate(data)
    return data


def merge(defaults: dict[str, Any], submitted: dict[str, Any]) -> dict[str, Any]:
    """Submitted values win, section by section: a field given in ``trainer:`` replaces the default's
    whole value (a ``task_mix`` is never mixed with the default one), the other fields keep theirs."""
    merged = {**defaults, **submitted}
    for key in defaults.keys() & submitted.keys():
        if isinstance(defaults[key], dict) and isinstance(submitted[key], dict):
            merged[key] = {**defaults[key], **submitted[key]}
    return merged


def parse(body: bytes, content_type: str, defaults: dict[str, Any] | None = None) -> RunConfig:
    try:
        if content_type.split(";")[0].strip() in YAML_TYPES:
            data = yaml.safe_load(body.decode())
        else:
            data = json.loads(body or b"{}")
    except (yaml.YAMLError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise ProblemError(400, "Unreadable run config", str(exc)) from exc
    except RecursionError as exc:
        raise ProblemError(400, "Unreadable run config", "the body is nested too deeply") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProblemError(400, "Unreadable run config", f"a run config is a mapping, not {type(data).__name__}")
    try:
        return RunConfig.model_validate(merge(defaults or {}, data))
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise ProblemError(422, "Invalid run config", detail, errors=errors) from exc


async def read_config(request: Request, session: AsyncSession) -> RunConfig:
    """The request's run config, ready to run; every refusal names the field at fault."""
    defaults: dict[str, Any] = request.app.state.run_defaults
    config = parse(await request.body(), request.headers.get("content-type", ""), defaults)
    try:
        load_task_types(config.selfplay.task_mix, config.selfplay.task_dirs)
    except TaskTypeError as exc:
        raise invalid(["selfplay", "task_mix"], str(exc), "task_type") from exc
    if config.judge.name is not None:
        judge = await session.get(JudgeRecord, config.judge.name)
        if judge is None:
            raise invalid(["judge", "name"], f"no judge registered as {config.judge.name!r}", "judge")
        if config.judge.url not in (None, judge.url):
            msg = f"{config.judge.url!r} is not the url of judge {judge.name!r} ({judge.url})"
            raise invalid(["judge", "url"], msg, "judge")
        config = config.model_copy(update={"judge": config.judge.model_copy(update={"url": judge.url})})
    check_hosts(config, request.app.state.allowed_hosts)
    await model_resolves(config)
    await fleet_can_serve(config, request.app.state.generator)
    if config.judge.url:
        await judge_health(config.judge.url)
    return config


async def model_resolves(config: RunConfig) -> None:
    """Refuse a model the trainer and generator could not load, before a run waits on it: cheaply, from the
    Hugging Face cache or the Hub's file listing (no weights are fetched), in a thread."""
    try:
        await asyncio.to_thread(check_model, config.model, config.model_revision)
    except ModelError as exc:
        if exc.transient:
            raise ProblemError(503, "Model hub unreachable", str(exc), headers={"Retry-After": "30"}) from exc
        raise invalid([exc.field], str(exc), "model", title="Model unusable") from exc


async def fleet_can_serve(config: RunConfig, generators: GeneratorFleet) -> None:
    """Refuse (422, naming both models) a run whose model the training generator could not swap in place:
    another architecture, other shapes or vocabulary. Its swap would only be refused later (409), and the
    run would never get its weights served. Unknown is not a refusal: a fleet that does not answer, or a
    Hub model not on this machine yet, is left to the generator's own check at the first swap."""
    try:
        served = await generators.model()
    except (httpx.HTTPError, ServiceError) as exc:
        log.info("fleet did not say what it serves (%r): run model %s not compared", exc, config.model)
        return
    folder = await asyncio.to_thread(local_model, config.model, config.model_revision)
    if folder is None:
        return
    try:
        candidate = await asyncio.to_thread(model_signature, folder)
    except SignatureError as exc:
        raise invalid(["model"], f"{config.model}: {exc}", "model", title="Model unusable") from exc
    mismatch = describe_mismatch(served.signature, candidate)
    if mismatch is not None:
        msg = (f"{config.model} ({folder}) cannot be served in place of the fleet's model {served.path}: {mismatch}; "
               "run a generator fleet on this model for it")  # fmt: skip
        raise invalid(["model"], msg, "model", title="Model not servable by the fleet")


def check_hosts(config: RunConfig, allowed: HostAllowlist) -> None:
    """Every URL the run would make our services call must be on an allowed host (no SSRF by config)."""
    urls: list[tuple[list[str | int], str]] = [(["judge", "url"], config.judge.url)] if config.judge.url else []
    for role in ("proposer", "solver", "rubric_writer", "scorer"):
        endpoint = getattr(config.roles, role)
        if endpoint is not None:
            urls.append((["roles", role, "base_url"], endpoint.base_url))
    for loc, url in urls:
        if (why := allowed.refusal(url)) is not None:
            raise invalid(loc, why, "host")


async def judge_health(url: str) -> str:
    """The schema version a judge speaks; raises ``ProblemError`` 422 when it cannot serve this deployment."""
    judge = JudgeClient(url, timeout_s=JUDGE_CHECK_TIMEOUT_S)
    try:
        health = await judge.healthz()
    except (httpx.HTTPError, ServiceError) as exc:
        raise ProblemError(422, "Judge unusable", f"judge {url}: health check failed: {exc!r}") from exc
    finally:
        await judge.aclose()
    version = health.get("schema_version")
    if version != SCHEMA_VERSION:
        detail = f"judge {url} speaks schema version {version!r}; this deployment speaks {SCHEMA_VERSION!r}"
        raise ProblemError(422, "Judge unusable", detail)
    return str(version)

"""An OpenAI-compatible chat client for the roles (proposer, solver, rubric writer, scorer).

Any endpoint that speaks the OpenAI API works: the policy's own vLLM generator (self-play) or an
external "teacher". Structured output is requested with the standard ``json_schema`` response
format; the reply is still parsed tolerantly, because not every endpoint enforces it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from openai import APIConnectionError, APIStatusError, AsyncOpenAI, BadRequestError

from shared.clients.fleet import Fleet, Replica
from shared.schemas import ChatMessage, Completion, ModelEndpoint

log = logging.getLogger(__name__)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (models wrap JSON in prose or code fences), else None."""
    for candidate in (text, *(m.group(0) for m in _JSON_OBJECT.finditer(text))):
        try:
            value = json.loads(candidate, strict=False)  # tolerate raw control characters
        except (json.JSONDecodeError, TypeError):
            continue
        if isinstance(value, dict):
            return value
    return None


def _refuses_structured_output(exc: BadRequestError) -> bool:
    text = str(exc).lower()
    return any(k in text for k in ("response_format", "json_schema", "structured output", "guided"))


@dataclass
class Sampled:
    """Completions plus the exact prompt token ids the generator saw, and the run whose weights served."""

    prompt_token_ids: list[int]
    completions: list[Completion]
    policy_run: str | None = None


VERSION, VERSION_START, RUN, RUN_START = (
    "x-policy-version",
    "x-policy-version-start",
    "x-policy-run",
    "x-policy-run-start",
)
"""Response headers of our generator: the version serving when the answer was sent and when the request
arrived (they differ when a swap landed in flight), and the run whose weights those are."""


def _version(headers: Any, name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.isdigit() else None


def _retryable(exc: Exception) -> bool:
    """Another replica may answer: this one is unreachable, or refuses work until the fleet syncs it."""
    return isinstance(exc, APIConnectionError) or (isinstance(exc, APIStatusError) and exc.status_code == 503)


class ChatClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "EMPTY",
        timeout_s: float = 300.0,
        max_parallel: int = 8,
        structured: bool = True,
    ) -> None:
        self.model, self.max_parallel = model, max_parallel
        self.structured = structured
        """Ask for ``json_schema`` output; turned off for good when the endpoint refuses it."""
        self.fleet = Fleet(base_url)
        """One endpoint, or a fleet of replicas (``a,b`` or ``dns+http://...``): see shared/clients/fleet.py."""
        self._api_key, self._timeout_s = api_key, timeout_s
        self._clients: dict[str, AsyncOpenAI] = {}
        self._slots = asyncio.Semaphore(max_parallel)
        self.newest_version: int | None = None
        """The newest policy version any response has been tagged with (our generator tags each one)."""

    def _client(self, url: str) -> AsyncOpenAI:
        if url not in self._clients:
            # A fleet retries on another replica itself; one endpoint keeps openai's own retries.
            retries = 2 if self.fleet.single else 0
            self._clients[url] = AsyncOpenAI(
                base_url=url, api_key=self._api_key, timeout=self._timeout_s, max_retries=retries
            )
        return self._clients[url]

    async def aclose(self) -> None:
        await asyncio.gather(*(c.close() for c in self._clients.values()))

    async def _create(self, **kwargs: Any) -> tuple[Any, Any]:
        """One chat completion on the least-busy replica, moving to another while one cannot take it;
        returns (the parsed response, the response headers)."""
        attempts = 1 if self.fleet.single else 3 * max(1, len(self.fleet.replicas))
        for attempt in range(attempts):
            async with self.fleet.lease() as replica:
                try:
                    return await self._call(replica, kwargs)
                except Exception as exc:
                    if not _retryable(exc) or attempt == attempts - 1:
                        raise
                    log.info("replica %s refused or unreachable (%s); trying another", replica.url, type(exc).__name__)
                    self.fleet.bench(replica)
            await asyncio.sleep(min(1.0, 0.1 * (attempt + 1)))
        raise AssertionError("unreachable")

    async def _call(self, replica: Replica, kwargs: dict[str, Any]) -> tuple[Any, Any]:
        # Typed loosely on purpose: vLLM extensions (return_token_ids, ...) are not in openai's types.
        completions: Any = self._client(replica.url).chat.completions
        raw = await completions.with_raw_response.create(**kwargs)
        version = _version(raw.headers, VERSION)
        if version is not None and (self.newest_version is None or version > self.newest_version):
            self.newest_version = version
        return raw.parse(), raw.headers

    async def json_chat(
        self, messages: list[ChatMessage], schema: dict[str, Any], max_tokens: int, temperature: float = 0.0
    ) -> tuple[dict[str, Any] | None, str]:
        """One structured-output call: (parsed object or None, raw text).

        A request the endpoint refuses (e.g. prompt + budget over its context) counts as an
        unusable reply, so the caller's bounded retries and "ungradeable" handling apply.
        """
        async with self._slots:
            try:
                response = await self._json_call(messages, schema, max_tokens, temperature)
            except BadRequestError as exc:
                if self.structured and _refuses_structured_output(exc):
                    log.warning("%s does not take json_schema output; asking in the prompt from now on", self.model)
                    self.structured = False
                    return await self._unstructured_retry(messages, schema, max_tokens, temperature)
                log.warning("endpoint refused a structured request: %s", exc)
                return None, str(exc)
        text = response.choices[0].message.content or ""
        return parse_json_object(text), text

    async def _unstructured_retry(
        self, messages: list[ChatMessage], schema: dict[str, Any], max_tokens: int, temperature: float
    ) -> tuple[dict[str, Any] | None, str]:
        try:
            response = await self._json_call(messages, schema, max_tokens, temperature)
        except BadRequestError as exc:
            return None, str(exc)
        text = response.choices[0].message.content or ""
        return parse_json_object(text), text

    async def _json_call(
        self, messages: list[ChatMessage], schema: dict[str, Any], max_tokens: int, temperature: float
    ) -> Any:
        """With ``json_schema`` output where the endpoint takes it; else the schema goes in the prompt."""
        payload = [m.model_dump() for m in messages]
        extra: dict[str, Any] = {}
        if self.structured:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema, "strict": True},
            }
        else:
            hint = f"\n\nReply with one JSON object only, matching this JSON schema:\n{json.dumps(schema)}"
            payload[-1] = {**payload[-1], "content": payload[-1]["content"] + hint}
        response, _ = await self._create(
            model=self.model, messages=payload, max_tokens=max_tokens, temperature=temperature, **extra
        )
        return response

    @classmethod
    def for_endpoint(cls, endpoint: ModelEndpoint, timeout_s: float = 300.0, max_parallel: int = 8) -> ChatClient:
        """A client of a teacher; its API key is read here, from the variable the config names."""
        key = "EMPTY"
        if endpoint.api_key_env:
            if endpoint.api_key_env not in os.environ:
                raise ValueError(
                    f"environment variable {endpoint.api_key_env!r} (API key of {endpoint.model}) is unset"
                )
            key = os.environ[endpoint.api_key_env]
        return cls(endpoint.base_url, endpoint.model, key, timeout_s, max_parallel, endpoint.structured_output)

    async def sample(
        self,
        messages: list[ChatMessage],
        n: int,
        max_tokens: int,
        temperature: float,
        with_tokens: bool = True,
        seed: int | None = None,
    ) -> Sampled:
        """n answers; ``with_tokens`` asks for token ids and log-probs (vLLM extensions); a ``seed`` makes the
        draw repeatable on the same weights (evaluations). One endpoint gets one request with ``n``; a fleet
        gets n requests of one answer, spread over its replicas, each answer tagged with its own version."""
        extra: dict[str, Any] = {"logprobs": True, "extra_body": {"return_token_ids": True}} if with_tokens else {}
        if seed is not None:
            extra["seed"] = seed
        request = {"model": self.model, "messages": [m.model_dump() for m in messages], "max_tokens": max_tokens}
        request |= {"temperature": temperature, **extra}
        if seed is None and n > 1 and (len(await self.fleet.refresh()) > 1):
            parts = await asyncio.gather(*(self._sample_one(request, 1) for _ in range(n)))
        else:
            parts = [await self._sample_one(request, n)]
        runs = {p.policy_run for p in parts}
        return Sampled(
            prompt_token_ids=parts[0].prompt_token_ids,
            completions=[c for p in parts for c in p.completions],
            # Answers from replicas serving different runs' weights: the caller sees it and drops them.
            policy_run=runs.pop() if len(runs) == 1 else "|".join(sorted(r or "" for r in runs)),
        )

    async def _sample_one(self, request: dict[str, Any], n: int) -> Sampled:
        async with self._slots:
            response, headers = await self._create(**request, n=n)
        raw = response.model_dump()
        version, start = _version(headers, VERSION), _version(headers, VERSION_START)
        completions = []
        for choice in raw["choices"]:
            content = (choice.get("logprobs") or {}).get("content") or []
            completions.append(
                Completion(
                    text=choice["message"]["content"] or "",
                    token_ids=list(choice.get("token_ids") or []),
                    logprobs=[float(t["logprob"]) for t in content],
                    finish_reason=choice.get("finish_reason"),
                    policy_version=version,
                    # The older of the two (a rollback landing mid-answer makes the start the newer).
                    policy_version_start=min(start, version) if start is not None and version is not None else version,
                )
            )
        run, run_start = headers.get(RUN) or None, headers.get(RUN_START, headers.get(RUN)) or None
        return Sampled(
            prompt_token_ids=list(raw.get("prompt_token_ids") or []),
            completions=completions,
            # Swapped from one run's weights to another's mid-answer: it is neither run's policy. (From the
            # base served for no run to a run's: that run starts from the same base.)
            policy_run=run if run_start in (None, run) else f"{run_start}>{run or ''}",
        )

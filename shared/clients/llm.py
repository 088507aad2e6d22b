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

from openai import AsyncOpenAI, BadRequestError

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
    """Completions plus the exact prompt token ids the generator saw."""

    prompt_token_ids: list[int]
    completions: list[Completion]


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
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=2)
        self._slots = asyncio.Semaphore(max_parallel)
        # Typed loosely on purpose: vLLM extensions (return_token_ids, ...) are not in openai's types.
        self._completions: Any = self._client.chat.completions

    async def aclose(self) -> None:
        await self._client.close()

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
        return await self._completions.create(
            model=self.model, messages=payload, max_tokens=max_tokens, temperature=temperature, **extra
        )

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
        """n answers in one request; ``with_tokens`` asks for token ids and log-probs (vLLM extensions);
        a ``seed`` makes the draw repeatable on the same weights (evaluations)."""
        extra: dict[str, Any] = {"logprobs": True, "extra_body": {"return_token_ids": True}} if with_tokens else {}
        if seed is not None:
            extra["seed"] = seed
        async with self._slots:
            response = await self._completions.create(
                model=self.model,
                messages=[m.model_dump() for m in messages],
                n=n,
                max_tokens=max_tokens,
                temperature=temperature,
                **extra,
            )
        raw = response.model_dump()
        completions = []
        for choice in raw["choices"]:
            content = (choice.get("logprobs") or {}).get("content") or []
            completions.append(
                Completion(
                    text=choice["message"]["content"] or "",
                    token_ids=list(choice.get("token_ids") or []),
                    logprobs=[float(t["logprob"]) for t in content],
                    finish_reason=choice.get("finish_reason"),
                )
            )
        return Sampled(prompt_token_ids=list(raw.get("prompt_token_ids") or []), completions=completions)

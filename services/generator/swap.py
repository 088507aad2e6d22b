"""Hot-swap the served weights in place with vLLM's own engine calls, never hanging, never draining.

A full-weight swap (and a rollback: the same path) is: confine the path, check the files, check that the
checkpoint fits the served model, verify the checksums -- all before generation is paused, so a refusal
costs the replica nothing -- then pause with ``mode="keep"`` (in-flight requests freeze in place, KV
cache and all), reload from disk, set the new version, resume. Requests running across the swap finish
on the new weights, and the inference port's headers say which versions a response spans
(``X-Policy-Version-Start`` .. ``X-Policy-Version``). Nothing is drained and the prefix cache is kept:
each swap salts the cache keys of the requests admitted after it (``cache_salt``), so such a request never
reuses blocks computed by older weights. If a reload fails, the previous weights are reloaded and serve.
LoRA adapters swap without any pause (``swap_adapter``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.generator import metrics
from services.generator.checkpoints import (
    SwapError,
    check_checkpoint,
    check_fit,
    confine,
    verify_checksums,
)
from shared.modeling.signature import ModelSignature, ServedModel, model_signature
from shared.schemas import PolicyVersion, SwapRequest, WeightMode

__all__ = ["SwapError", "WeightSwapper", "check_checkpoint", "confine"]

log = logging.getLogger(__name__)
MAX_SALT = 128
"""vLLM's limit on ``cache_salt`` (no '@', '/', '\\' or NUL either)."""
UNSALTABLE = re.compile(r"[@/\\\x00]")


def combined_salt(user: object, ours: str) -> object:
    """A client's own ``cache_salt`` (isolation between its users) kept, and ours added to it: the
    result is as private as theirs and as version-bound as ours. An overlong pair keeps a digest of
    theirs; a salt vLLM refuses anyway (not a string, forbidden characters) is left for it to refuse."""
    if user is None:
        return ours
    if not isinstance(user, str) or not user or UNSALTABLE.search(user):
        return user
    salt = f"{user}|{ours}"
    if len(salt) <= MAX_SALT:
        return salt
    return f"{hashlib.sha256(user.encode()).hexdigest()[:32]}|{ours}"


class WeightSwapper:
    """Owns the served PolicyVersion; one swap at a time."""

    def __init__(
        self,
        engine: Any,
        base_model_path: str,
        served_name: str,
        timeout_s: float,
        roots: Sequence[Path] = (),
        max_lora_rank: int = 16,
    ) -> None:
        self.engine = engine
        self.roots = [*roots, Path(base_model_path)] if Path(base_model_path).is_dir() else list(roots)
        """Where swaps may load from: the checkpoint root, the models folder, the Hugging Face hub cache
        and the base model's own."""
        self.timeout_s = timeout_s
        self.base_model_path = base_model_path
        self.served_name = served_name
        self.max_lora_rank = max_lora_rank
        self.signature: ModelSignature = model_signature(Path(base_model_path))
        """The served base's shape: every candidate is checked against it before the weights are touched
        (a swap only ever installs weights of this shape, so it stays what is served)."""
        self.current = PolicyVersion(version=0, model=served_name, checkpoint_path=None)
        metrics.POLICY_VERSION.set(0)
        self._lock = asyncio.Lock()
        self.healthy = True
        self.models: Any = None
        """vLLM's OpenAIServingModels, which holds the loaded adapters (set once the app state exists)."""
        self.adapter: str | None = None
        """The adapter that requests for ``served_name`` are routed to; None serves the full weights."""
        self._adapters_served: set[str] = set()
        self._lease: asyncio.TimerHandle | None = None
        """Set while generation is held for a colocated trainer; it ends the hold when it fires."""
        self.admitted = True
        """Whether generation requests are served (services/generator/admission.py)."""
        self._serial = 0
        """Swaps served so far: part of the cache salt, so a version rewritten under the same number (a
        rewound run) or a run served twice never meets the blocks its earlier weights computed."""

    @property
    def cache_salt(self) -> str:
        """What the requests admitted now salt their prefix-cache keys with."""
        run = UNSALTABLE.sub("_", self.current.run_id or "base")[:64]
        return f"pop-{run}-v{self.current.version}-s{self._serial}"

    def policy(self) -> PolicyVersion:
        """What it serves, and whether it takes inference work."""
        return self.current.model_copy(update={"admitted": self.admitted})

    def admit(self, admitted: bool, why: str) -> None:
        if admitted != self.admitted:
            log.info("%s inference work: %s", "taking" if admitted else "refusing", why)
        self.admitted = admitted

    def served_model(self) -> ServedModel:
        return ServedModel(served_name=self.served_name, path=self.base_model_path, signature=self.signature)

    @property
    def held(self) -> bool:
        return self._lease is not None

    async def hold(self, seconds: float) -> None:
        """Freeze generation (requests keep their place and their cache) for at most ``seconds``, so a
        trainer sharing these cores or this GPU gets them for its update; the lease ends the hold even
        if that trainer dies. Holding again extends the lease."""
        async with self._lock:
            if self._lease is None:
                await self._step("pause", self.engine.pause_generation(mode="keep", clear_cache=False))
            else:
                self._lease.cancel()
            loop = asyncio.get_running_loop()
            self._lease = loop.call_later(seconds, lambda: loop.create_task(self._expire()))

    async def release(self) -> bool:
        """End a hold; False when none was held."""
        async with self._lock:
            return await self._release_locked()

    async def _release_locked(self) -> bool:
        if self._lease is None:
            return False
        self._lease.cancel()
        self._lease = None
        await self.engine.resume_generation()
        return True

    async def _expire(self) -> None:
        if await self.release():
            log.warning("generation hold expired: resumed without a release from the trainer")

    async def swap_adapter(self, request: SwapRequest, path: Path, weights: list[Path]) -> PolicyVersion:
        """LoRA: load the new adapter beside the old, route the policy name to it, then drop the old.

        In-flight requests finish on the adapter they started with; no pause is needed. The checksum
        is read while the engine loads the adapter; a mismatch drops the new adapter unserved.
        """
        from vllm.entrypoints.serve.lora.protocol import LoadLoRAAdapterRequest, UnloadLoRAAdapterRequest

        if self.models is None or not getattr(self.engine.vllm_config, "lora_config", None):
            raise SwapError(400, "LoRA not enabled", "start the generator with POP_GENERATOR_ENABLE_LORA=true")
        name = f"{self.served_name}-{request.run_id or 'run'}-v{request.version}"
        async with self._lock:
            await self._release_locked()  # a swap ends any hold: frozen requests must not wait on it
            reloaded = name in self._adapters_served
            self._adapters_served.add(name)
            verified = asyncio.create_task(asyncio.to_thread(verify_checksums, weights, request.checksums))
            try:
                with metrics.phase("lora", "load"):
                    loaded = await self._step(
                        "load_lora_adapter",
                        self.models.load_lora_adapter(LoadLoRAAdapterRequest(lora_name=name, lora_path=str(path))),
                    )
            except BaseException:
                verified.cancel()
                raise
            if not isinstance(loaded, str):  # an ErrorResponse: the old adapter keeps serving
                verified.cancel()
                raise SwapError(400, "Adapter not loaded", str(getattr(loaded, "error", loaded)))
            try:
                with metrics.phase("lora", "checksum"):  # what the load did not hide
                    await verified
            except SwapError:
                if name != self.adapter:  # never drop the adapter that serves now
                    await self._drop_adapter(name, UnloadLoRAAdapterRequest)
                raise
            previous, self.adapter = self.adapter, name
            self.current = PolicyVersion(
                version=request.version, run_id=request.run_id, model=self.served_name, checkpoint_path=str(path)
            )
            with metrics.phase("lora", "finish"):
                if previous is not None and previous != name:
                    # Only the name goes: requests still running on the old adapter finish on it, and the
                    # engine's LRU evicts it (the full-weight path, which pauses, removes every adapter).
                    await self.models.unload_lora_adapter(UnloadLoRAAdapterRequest(lora_name=previous))
                if reloaded:
                    # vLLM keys cached blocks by adapter name and path, so a new version's name never
                    # hits an old one's blocks; a name served before (a version rewritten after a
                    # rollback) could, and only then is the cache reset.
                    await self.engine.reset_prefix_cache()
        log.info("serving policy version %d as adapter %s from %s", request.version, name, path)
        return self.current

    async def _step(self, what: str, coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, self.timeout_s)
        except TimeoutError as exc:
            raise SwapError(504, "Swap timed out", f"{what} took longer than {self.timeout_s:.0f}s") from exc

    async def _reload(self, path: str) -> None:
        await self._step(
            "reload_weights",
            self.engine.collective_rpc("reload_weights", kwargs={"weights_path": path}),
        )

    async def _drop_adapter(self, name: str, unload_request: Any) -> None:
        """Forget an adapter in the serving layer *and* the engine: vLLM's unload route does only the first."""
        loaded = self.models.lora_requests.get(name)
        await self.models.unload_lora_adapter(unload_request(lora_name=name))
        if loaded is not None:
            await self.engine.remove_lora(loaded.lora_int_id)

    async def _drop_all_adapters(self) -> None:
        if self.models is None or not getattr(self.engine.vllm_config, "lora_config", None):
            return
        from vllm.entrypoints.serve.lora.protocol import UnloadLoRAAdapterRequest

        for name in list(self.models.lora_requests):
            await self._drop_adapter(name, UnloadLoRAAdapterRequest)
        for lora_id in await self.engine.list_loras():
            await self.engine.remove_lora(lora_id)

    async def swap(self, request: SwapRequest) -> PolicyVersion:
        """Serve the checkpoint ``request`` names; every attempt is counted and timed, by outcome."""
        started = time.perf_counter()
        status: int | None = 500  # an exception other than SwapError counts as a failure
        try:
            served = await self._swap(request)
            status = None
            return served
        except SwapError as exc:
            status = exc.status
            raise
        finally:
            seconds = time.perf_counter() - started
            metrics.record_swap(request.mode.value, metrics.swap_outcome(status), seconds, self.current.version)

    async def _swap(self, request: SwapRequest) -> PolicyVersion:
        with metrics.phase(request.mode.value, "verify"):
            path = await asyncio.to_thread(confine, request.path, self.roots)
            weights = await asyncio.to_thread(check_checkpoint, path, request.mode)
            try:  # headers only: milliseconds, where a checksum reads every byte
                await asyncio.to_thread(check_fit, self.signature, path, request.mode, self.max_lora_rank)
            except SwapError as exc:
                if exc.status == 400:  # unreadable: a file changed on disk is better named by its sha256
                    await asyncio.to_thread(verify_checksums, weights, request.checksums)
                raise
        if request.mode is WeightMode.lora:
            return await self.swap_adapter(request, path, weights)
        if request.transport == "nccl":
            return await self._record_pushed(request, path)
        with metrics.phase("full", "checksum"):  # before the pause: a corrupt checkpoint costs no pause
            await asyncio.to_thread(verify_checksums, weights, request.checksums)
        async with self._lock:
            previous = self.current
            started = time.perf_counter()
            with metrics.phase("full", "pause"):
                if self._lease is not None:  # held already: the swap takes the hold's pause over, and ends it
                    self._lease.cancel()
                    self._lease = None
                else:  # "keep": in-flight requests freeze in place and go on after the reload; none drains
                    await self._step("pause", self.engine.pause_generation(mode="keep", clear_cache=False))
            paused = time.perf_counter()
            try:
                try:
                    with metrics.phase("full", "reload"):
                        await self._reload(str(path))
                except Exception as exc:
                    log.exception("reload of %s failed; restoring version %d", path, previous.version)
                    await self._restore(previous)
                    if isinstance(exc, SwapError):
                        raise
                    raise SwapError(500, "Swap failed", f"reloading {path}: {exc}") from exc
                self.current = PolicyVersion(
                    version=request.version,
                    run_id=request.run_id,
                    model=previous.model,
                    checkpoint_path=str(path),
                )
                self._serial += 1  # requests admitted from here on salt their cache keys anew
                self.adapter = None  # full weights: the policy name means the base weights again
                await self._drop_all_adapters()
            finally:
                with metrics.phase("full", "finish"):
                    await self.engine.resume_generation()
        log.info(
            "serving policy version %d from %s (pause %.3fs, reload %.2fs, no drain)",
            request.version, path, paused - started, time.perf_counter() - paused,
        )  # fmt: skip
        return self.current

    async def _record_pushed(self, request: SwapRequest, path: Path) -> PolicyVersion:
        """The trainer broadcast this version into the engine (vLLM's weight-transfer routes, tagged
        ``<run>:v<version>``): check the tag and serve it under its number; nothing is read from disk. 409
        when the engine holds other weights (it restarted, or missed the push): load from disk instead."""
        if getattr(self.engine.vllm_config, "weight_transfer_config", None) is None:
            raise SwapError(409, "No weight transfer engine", "started without POP_GENERATOR_WEIGHT_SYNC=nccl")
        expected = f"{request.run_id}:v{request.version}"
        async with self._lock:
            held = await self._step("weight version", self.engine.get_weight_version())
            if held != expected:
                raise SwapError(409, "Pushed weights missing", f"the engine holds {held!r}, not {expected!r}")
            self.current = PolicyVersion(
                version=request.version, run_id=request.run_id, model=self.current.model, checkpoint_path=str(path)
            )
            self._serial += 1
            self.adapter = None
            await self._release_locked()  # the trainer held generation for its push
        log.info("serving policy version %d, pushed over NCCL", request.version)
        return self.current

    async def _restore(self, previous: PolicyVersion) -> None:
        try:
            await self._reload(previous.checkpoint_path or self.base_model_path)
        except Exception:
            self.healthy = False
            log.exception("could not restore version %d; generator marked unhealthy", previous.version)

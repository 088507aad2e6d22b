"""Hot-swap the served weights in place with vLLM's own engine calls, never hanging.

The sequence is pause (drain in-flight requests) -> reload from disk -> reset the prefix cache ->
resume. The version is updated while generation is paused, so a client that reads the same
version before and after a request knows which weights produced it. If a reload fails, the
previous weights are reloaded and keep serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from services.generator import metrics
from shared.files import sha256_file
from shared.schemas import PolicyVersion, SwapRequest, WeightMode

log = logging.getLogger(__name__)


class SwapError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"
INDEX = "model.safetensors.index.json"


def confine(raw: str, roots: Sequence[Path]) -> Path:
    """The folder ``raw`` names, once symlinks are resolved, if it and every file in it lie under the
    ``roots``: a swap request can make the server read only checkpoints and models, never any file it
    can reach. A Hugging Face snapshot passes: its files link into the same cache's ``blobs/``."""
    path = Path(raw)
    if not path.is_absolute() or ".." in path.parts:
        raise SwapError(400, "Checkpoint path refused", f"{raw!r}: an absolute path without '..' is required")
    real = _inside(raw, path, roots)
    if real.is_dir():
        for entry in real.iterdir():
            _inside(f"{raw}/{entry.name}", entry, roots)
    return real


def _inside(raw: str, path: Path, roots: Sequence[Path]) -> Path:
    real = path.resolve()
    if not any(real.is_relative_to(root.resolve()) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise SwapError(
            400, "Checkpoint path refused", f"{raw} resolves to {real}, outside the weight roots ({allowed})"
        )
    return real


def check_checkpoint(path: Path, mode: WeightMode = WeightMode.full) -> list[Path]:
    """Refuse a folder that could not load fully, before touching the served weights; return the files
    the engine will read (every safetensors shard and its index; for LoRA the adapter and its config)."""
    if not path.is_dir():
        raise SwapError(400, "Checkpoint not found", f"no checkpoint directory at {path}")
    if mode is WeightMode.lora:
        if not (path / ADAPTER_WEIGHTS).is_file() or not (path / ADAPTER_CONFIG).is_file():
            raise SwapError(400, "Checkpoint incomplete", f"{path} holds no {ADAPTER_WEIGHTS} + {ADAPTER_CONFIG}")
        return [path / ADAPTER_WEIGHTS, path / ADAPTER_CONFIG]
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise SwapError(400, "Checkpoint incomplete", f"{path} holds no *.safetensors file")
    index = path / INDEX
    if index.is_file():
        try:
            named = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError) as exc:
            raise SwapError(400, "Checkpoint incomplete", f"{index} is not a safetensors index: {exc!r}") from exc
        missing = sorted(named - {p.name for p in shards})
        if missing:
            raise SwapError(400, "Checkpoint incomplete", f"{path} lacks the shards its index names: {missing}")
        return [*shards, index]
    return shards


def verify_checksums(files: Sequence[Path], checksums: Mapping[str, str]) -> None:
    """Every file the engine will read matches the manifest's sha256 (read in parallel: hashlib releases the
    GIL, so shards hash at the disk's pace); none is skipped. No checksums (a base model): nothing to check."""
    if not checksums:
        return
    unlisted = [f.name for f in files if f.name not in checksums]
    if unlisted:
        raise SwapError(400, "Checkpoint checksum mismatch", f"no sha256 in the manifest for {unlisted}")
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        digests = dict(zip(files, pool.map(sha256_file, files), strict=True))
    for path, actual in digests.items():
        if actual != checksums[path.name]:
            detail = f"{path.name}: sha256 {actual} != expected {checksums[path.name]}"
            raise SwapError(400, "Checkpoint checksum mismatch", detail)


class WeightSwapper:
    """Owns the served PolicyVersion; one swap at a time."""

    def __init__(
        self, engine: Any, base_model_path: str, served_name: str, timeout_s: float, roots: Sequence[Path] = ()
    ) -> None:
        self.engine = engine
        self.roots = [*roots, Path(base_model_path)] if Path(base_model_path).is_dir() else list(roots)
        """Where swaps may load from: the checkpoint root, the models folder, the Hugging Face hub cache
        and the base model's own."""
        self.timeout_s = timeout_s
        self.base_model_path = base_model_path
        self.served_name = served_name
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
        if request.mode is WeightMode.lora:
            return await self.swap_adapter(request, path, weights)
        async with self._lock:
            await self._release_locked()  # "wait" below would wait forever on requests a hold froze
            previous = self.current
            started = time.perf_counter()
            # The checksum is read while in-flight requests drain: a corrupt checkpoint then costs a
            # pause, and a good one no time of its own (its bytes come from the page cache next).
            verified = asyncio.create_task(asyncio.to_thread(verify_checksums, weights, request.checksums))
            # "wait" drains in-flight requests first, so no answer mixes two versions' weights.
            try:
                with metrics.phase("full", "drain"):
                    await self._step("pause", self.engine.pause_generation(mode="wait", clear_cache=True))
            except BaseException:
                verified.cancel()
                raise
            paused = time.perf_counter()
            try:
                with metrics.phase("full", "checksum"):  # what the drain did not hide
                    await verified
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
                self.adapter = None  # full weights: the policy name means the base weights again
                await self._drop_all_adapters()
            finally:
                with metrics.phase("full", "finish"):
                    await self.engine.reset_prefix_cache()
                    await self.engine.resume_generation()
        log.info(
            "serving policy version %d from %s (drain %.2fs, reload %.2fs)",
            request.version, path, paused - started, time.perf_counter() - paused,
        )  # fmt: skip
        return self.current

    async def _restore(self, previous: PolicyVersion) -> None:
        try:
            await self._reload(previous.checkpoint_path or self.base_model_path)
        except Exception:
            self.healthy = False
            log.exception("could not restore version %d; generator marked unhealthy", previous.version)

"""The training generator as a fleet: swaps fan out to every replica, and a replica that restarted,
failed a swap or fell behind is brought to the fleet's version before it takes work again.

The fleet's *target* is the last swap that reached at least one replica (the whole SwapRequest, with
its checksums), kept in Redis so every gateway replica and a restarted gateway share it. A
reconciler compares each replica with it every ``fleet_check_s``: one behind is swapped to it (which
admits it), one already there but not admitted (a fresh replica with nothing to load) is admitted.
Replicas started with ``POP_GENERATOR_WAIT_FOR_FLEET=true`` refuse generation (503) until then, so
producers, which move a refused request to another replica, never sample from a stale one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from redis.asyncio import Redis

from shared.api import ReplicaStatus
from shared.clients.generator import GeneratorClient, GeneratorFleet, ReplicaOutcome
from shared.clients.http import ServiceError
from shared.schemas import PolicyVersion, SwapRequest

log = logging.getLogger(__name__)


def target_key(spec: str) -> str:
    """Keyed by the fleet's spec (its admin URLs or DNS name), so two deployments sharing a Redis, or a
    training and an eval generator, never take each other's versions."""
    return f"pop:generator:{hashlib.sha256(spec.encode()).hexdigest()[:16]}:target"


async def target(redis: Redis, spec: str) -> SwapRequest | None:
    """The fleet's version: what its last swap that reached any replica loaded."""
    raw = await redis.get(target_key(spec))
    return None if raw is None else SwapRequest.model_validate_json(raw)


def same(served: PolicyVersion | None, request: SwapRequest | None) -> bool:
    """Whether a replica serves what ``request`` names (no target: whatever it serves is right)."""
    if request is None:
        return True
    return served is not None and (served.run_id, served.version) == (request.run_id, request.version)


class FleetControl:
    """Swaps and reconciliation for the gateway; one fleet-wide change at a time in this process."""

    def __init__(self, generators: GeneratorFleet, redis: Redis, swap_timeout_s: float) -> None:
        self.generators, self.redis, self.swap_timeout_s = generators, redis, swap_timeout_s
        self.spec = generators.spec
        self.lock = asyncio.Lock()
        self.last_errors: dict[str, str] = {}

    async def swap(self, request: SwapRequest, timeout_s: float) -> list[ReplicaOutcome]:
        """Every replica loads ``request`` in parallel. It is the fleet's target from before the first replica
        loads it (a gateway killed mid-swap leaves a target the reconciler moves every replica forward to,
        never one it would roll a swapped replica back from); replicas that failed stop taking work until the
        reconciler brings them up. When none took it, the fleet serves on as it was and the old target is put
        back."""
        key = target_key(self.spec)
        async with self.lock:
            previous = await self.redis.get(key)
            # A replica brought up later reads it from disk: an NCCL push reached only those on the group.
            durable = request.model_copy(update={"transport": "disk"})
            await self.redis.set(key, durable.model_dump_json())
            outcomes = await self.generators.each(lambda c: self._swap_one(c, request, timeout_s))
            if not any(o.served is not None for o in outcomes):
                await (self.redis.set(key, previous) if previous is not None else self.redis.delete(key))
                return outcomes
            for o in outcomes:
                if o.error is not None:
                    log.warning("replica %s failed the swap to v%d (%r); benched", o.url, request.version, o.error)
                    self.last_errors[o.url] = repr(o.error)
                    with contextlib.suppress(Exception):
                        await self.generators.client(o.url).admit(False)
            return outcomes

    @staticmethod
    async def _swap_one(client: GeneratorClient, request: SwapRequest, timeout_s: float) -> PolicyVersion:
        """A replica that did not take the trainer's NCCL push (it restarted, or is not on the transfer group)
        loads the same version from disk instead."""
        try:
            return await client.swap(request, timeout_s)
        except ServiceError as exc:
            if request.transport != "nccl" or exc.status != 409:
                raise
            log.info("replica %s has not the pushed v%d (%s); loading it from disk", client.base_url,
                     request.version, exc.problem.get("detail"))  # fmt: skip
            return await client.swap(request.model_copy(update={"transport": "disk"}), timeout_s)

    async def reconcile_once(self) -> list[str]:
        """Bring every replica to the target (or admit it where it already is); returns the URLs acted on."""
        if self.lock.locked():
            return []  # a fleet-wide swap is under way: it decides what each replica serves
        async with self.lock:
            wanted = await target(self.redis, self.spec)
            acted = []
            for outcome in await self.generators.served_all():
                served = outcome.served
                if served is None or (served.admitted and same(served, wanted)):
                    continue
                acted.append(outcome.url)
                client = self.generators.client(outcome.url)
                try:
                    if wanted is not None and not same(served, wanted):
                        log.info("replica %s serves %s v%d; bringing it to v%d",
                                 outcome.url, served.run_id, served.version, wanted.version)  # fmt: skip
                        await client.swap(wanted, self.swap_timeout_s)
                    await client.admit(True)
                    self.last_errors.pop(outcome.url, None)
                except Exception as exc:  # it stays benched; the next round tries again
                    self.last_errors[outcome.url] = repr(exc)
                    log.warning("replica %s could not be brought up: %r", outcome.url, exc)
            return acted

    async def reconcile_forever(self, every_s: float) -> None:
        while True:
            try:
                await self.reconcile_once()
            except Exception:  # Redis or the network: try again next round
                log.exception("fleet reconciliation failed")
            await asyncio.sleep(every_s)

    async def replicas(self) -> list[ReplicaStatus]:
        """What each replica serves now, whether it takes work, and whether it is whole."""
        wanted = await target(self.redis, self.spec)
        outcomes = await self.generators.served_all()
        ready = await asyncio.gather(*(self.generators.client(o.url).ready() for o in outcomes), return_exceptions=True)
        return [
            ReplicaStatus(
                url=o.url,
                healthy=o.served is not None,
                ready=r is True,
                admitted=o.served is not None and o.served.admitted,
                current=same(o.served, wanted),
                served=o.served,
                error=_error(o.error) or self.last_errors.get(o.url),
            )
            for o, r in zip(outcomes, ready, strict=True)
        ]


def _error(exc: Exception | None) -> str | None:
    if exc is None:
        return None
    if isinstance(exc, ServiceError):
        return f"{exc.status}: {exc.problem.get('title', '')} {exc.problem.get('detail', '')}".strip()
    return repr(exc)

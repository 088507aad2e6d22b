"""How a new version's weights reach the generators: ``POP_TRAINER_WEIGHT_SYNC`` picks the backend.

``disk`` (the default): nothing to push. The served version the trainer wrote is the transport: the
gateway's swap tells each replica to reload it from the shared volume (behind a drain).

``nccl``: rank 0 broadcasts the full weights, in the served dtype, from its GPU into every replica's
GPU memory with vLLM's own weight-transfer engine (``WeightTransferTrainerFactory.trainer_init`` once,
``send_weights`` per version), driven over HTTP through vLLM's routes on each replica. The served
version is still written first, every step: it is the durable copy that rollbacks, evals and a restarted
replica load, and the gateway records it as today. How version N then becomes what a replica says it serves:

1. before the push, each replica is held (POP's ``POST /v1/policy/hold``: vLLM pauses with
   ``mode="keep"``; requests keep their place, the lease ends the hold if this trainer dies);
2. ``send_weights`` runs ``/start_weight_update``, ``/update_weights`` beside the broadcast and
   ``/finish_weight_update`` with ``weight_version = "<run_id>:v<N>"``, on every replica;
3. the trainer asks the gateway for a swap with ``transport: "nccl"``; the gateway sends each replica a
   ``SwapRequest(transport="nccl", path=<the durable copy>)``, and the generator checks that vLLM's
   weight version is that tag, records PolicyVersion N, resets its prefix cache and ends the hold.

A push that fails (a replica restarted and left the NCCL group, one unreachable) is not fatal: the
holds are released, the next push re-forms the group, and this version goes by disk like any other.
FSDP: the gathered full state dict that the served version was written from is what rank 0 sends, so
the other ranks join no new collective. LoRA runs are refused: adapters load with load_lora_adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import httpx
import torch

from shared.schemas import WeightMode
from shared.settings import TrainerSettings, reveal, weight_sync_refusal

log = logging.getLogger(__name__)
Meta = tuple[str, torch.dtype, tuple[int, ...]]


class WeightTransport(Protocol):
    name: str

    def push(self, model: Any, version: int, gathered: Mapping[str, torch.Tensor] | None) -> bool:
        """Put ``version``'s weights into every replica; True when the swap only has to record it."""
        ...

    def close(self) -> None: ...


class DiskTransport:
    """Today's path: the served version on disk is the transport; the gateway's swap loads it."""

    name = "disk"

    def push(self, model: Any, version: int, gathered: Mapping[str, torch.Tensor] | None) -> bool:
        return False

    def close(self) -> None:
        pass


def weight_tag(run_id: str, version: int) -> str:
    """vLLM's ``weight_version`` for a push: the generator compares it before recording the version."""
    return f"{run_id}:v{version}"


def served_meta(model: Any, gathered: Mapping[str, torch.Tensor] | None, dtype: torch.dtype) -> list[Meta]:
    """(name, dtype, shape) of every tensor a push sends, in order, without copying one.

    The names are the model's parameters (a tied ``lm_head`` is sent once, as ``embed_tokens``, exactly as
    the served checkpoint holds it); floating weights travel in the served dtype, the generator's."""
    meta = []
    for name, param in model.named_parameters():
        tensor = gathered[name] if gathered is not None else param
        wire = dtype if tensor.is_floating_point() else tensor.dtype
        meta.append((name, wire, tuple(tensor.shape)))
    return meta


def update_info(meta: Sequence[Meta]) -> dict[str, Any]:
    """The per-round body of ``/update_weights`` for these tensors (vLLM's NCCLWeightTransferUpdateInfo)."""
    return {
        "names": [name for name, _, _ in meta],
        "dtype_names": [str(dtype).removeprefix("torch.") for _, dtype, _ in meta],
        "shapes": [list(shape) for _, _, shape in meta],
    }


def replica_init_infos(init_info: Mapping[str, Any], world_sizes: Sequence[int]) -> list[dict[str, Any]]:
    """vLLM builds one worker init payload (``rank_offset`` 1); with several replicas each needs its own
    ranks: replica i's workers come after the trainer (rank 0) and every worker of replicas 0..i-1."""
    if init_info["world_size"] != 1 + sum(world_sizes):
        raise ValueError(f"NCCL world size {init_info['world_size']} != 1 trainer + {sum(world_sizes)} workers")
    offsets = [1 + sum(world_sizes[:i]) for i in range(len(world_sizes))]
    return [{**init_info, "rank_offset": offset} for offset in offsets]


class FleetClient:
    """vLLM's ``VLLMWeightSyncClient`` protocol over every replica at once, in parallel: each call blocks
    in NCCL until all ranks join, so no replica may wait for another's answer. Also holds and releases."""

    def __init__(
        self,
        urls: Sequence[str],
        token: str | None,
        timeout_s: float,
        hold_s: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.http = [
            httpx.Client(base_url=u.rstrip("/"), timeout=timeout_s, headers=headers, transport=transport) for u in urls
        ]
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(urls)))
        self.hold_s, self.world_sizes, self.tag = hold_s, [1] * len(urls), ""

    def _each(self, method: str, path: str, bodies: Sequence[dict[str, Any] | None]) -> list[httpx.Response]:
        calls = [self.pool.submit(h.request, method, path, json=b) for h, b in zip(self.http, bodies, strict=True)]
        responses = [c.result() for c in calls]
        for response in responses:
            response.raise_for_status()
        return responses

    def _all(self, method: str, path: str, body: dict[str, Any] | None = None) -> list[httpx.Response]:
        return self._each(method, path, [body] * len(self.http))

    def discover(self) -> list[int]:
        """Each replica's worker count (TP x PP x DP): its share of the NCCL group."""
        self.world_sizes = [int(r.json()["world_size"]) for r in self._all("GET", "/get_world_size")]
        return self.world_sizes

    def tags(self) -> list[str | None]:
        return [r.json().get("weight_version") for r in self._all("GET", "/weight_info")]

    def hold(self) -> None:
        self._all("POST", "/v1/policy/hold", {"seconds": self.hold_s})

    def release(self) -> None:
        self._all("DELETE", "/v1/policy/hold")

    # The four calls vLLM's trainer engine makes (structural protocol: VLLMWeightSyncClient).
    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        bodies = [{"init_info": info} for info in replica_init_infos(init_info, self.world_sizes)]
        self._each("POST", "/init_weight_transfer_engine", bodies)

    def start_weight_update(self) -> None:
        self._all("POST", "/start_weight_update")

    def update_weights(self, update_info: dict[str, Any] | list[dict[str, Any]]) -> None:
        self._all("POST", "/update_weights", {"update_info": update_info})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self._all("POST", "/finish_weight_update", {"weight_version": weight_version or self.tag})

    def shutdown(self) -> None:
        try:
            self._all("POST", "/shutdown_weight_transfer_engine")
        except httpx.HTTPError as exc:  # a replica that restarted has no engine to shut down
            log.info("weight transfer shutdown: %r", exc)

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        for h in self.http:
            h.close()


class NcclTransport:
    """Rank 0's side of vLLM's NCCL weight transfer to every replica in ``weight_sync_urls``."""

    name = "nccl"

    def __init__(self, settings: TrainerSettings, run_id: str, dtype: torch.dtype, weight_mode: WeightMode) -> None:
        refusal = weight_sync_refusal(
            "POP_TRAINER_WEIGHT_SYNC", "nccl", torch.cuda.is_available(), lora=weight_mode is WeightMode.lora
        )
        if refusal is not None:
            raise ValueError(refusal)
        self.settings, self.run_id, self.dtype = settings, run_id, dtype
        self.client = FleetClient(
            settings.weight_sync_urls, reveal(settings.weight_sync_token), settings.retry_for_s, settings.hold_seconds
        )
        self.engine: Any = None
        self.pushed = ""
        """The tag of the last version every replica took: a replica showing another has left the group."""
        self.source: Any = None

    def push(self, model: Any, version: int, gathered: Mapping[str, torch.Tensor] | None) -> bool:
        try:
            self.client.hold()
            if self.engine is None or any(tag != self.pushed for tag in self.client.tags()):
                self._connect()
            self.source.bind(model, gathered)
            self.client.tag = weight_tag(self.run_id, version)
            self.engine.send_weights()
        except Exception:
            log.exception("NCCL push of v%d failed: it goes by disk, the next push re-forms the group", version)
            self._drop()
            try:
                self.client.release()  # the disk swap would end the holds too; a dead replica's ends with it
            except httpx.HTTPError as exc:
                log.warning("could not release every replica after a failed push (%r)", exc)
            return False
        finally:
            if self.source is not None:
                self.source.bind(None, None)  # never keep a gathered state dict past its step
        self.pushed = self.client.tag
        return True

    def _connect(self) -> None:
        """(Re)form the NCCL group: the trainer is rank 0, then every replica's workers, in URL order."""
        from vllm.distributed.weight_transfer import WeightTransferTrainerFactory
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        self._drop()
        sizes = self.client.discover()
        self.source = served_source(self.dtype)
        info = NCCLTrainerInitInfo(
            master_address=self.settings.weight_sync_master_address,
            master_port=self.settings.weight_sync_master_port,
            world_size=1 + sum(sizes),
            rank=0,
        )
        self.engine = WeightTransferTrainerFactory.trainer_init(info, client=self.client, source=self.source)
        log.info("NCCL weight sync: group of 1 trainer + %s workers formed", sizes)

    def _drop(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None
            self.client.shutdown()
        self.pushed = ""

    def close(self) -> None:
        self._drop()
        self.client.close()


def served_source(dtype: torch.dtype, device: torch.device | None = None) -> Any:
    """A vLLM ``WeightSource`` over the model (or its gathered state dict), cast to ``dtype`` one tensor at a
    time onto ``device`` (default: this GPU, where NCCL sends from); built here so that vLLM is imported
    only where it is used."""
    from vllm.distributed.weight_transfer import ParamMeta, WeightSource

    class ServedSource(WeightSource):
        def __init__(self) -> None:
            self.model: Any = None
            self.gathered: Mapping[str, torch.Tensor] | None = None

        def bind(self, model: Any, gathered: Mapping[str, torch.Tensor] | None) -> None:
            self.model, self.gathered = model, gathered

        def metadata(self) -> list[ParamMeta]:
            return [ParamMeta(n, d, s) for n, d, s in served_meta(self.model, self.gathered, dtype)]

        def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
            target = device or torch.device("cuda", torch.cuda.current_device())
            for name, param in self.model.named_parameters():
                tensor = self.gathered[name] if self.gathered is not None else param.detach()
                wire = dtype if tensor.is_floating_point() else tensor.dtype
                yield name, tensor.to(device=target, dtype=wire)

    return ServedSource()


def make_transport(settings: TrainerSettings, run_id: str, dtype: torch.dtype, mode: WeightMode) -> WeightTransport:
    if settings.weight_sync == "nccl":
        return NcclTransport(settings, run_id, dtype, mode)
    return DiskTransport()

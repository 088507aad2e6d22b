"""The model side of training: load the policy (and DPO's frozen reference), and one update."""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from services.trainer import losses, sharding
from services.trainer.compute import adapter_model, enable_gradient_checkpointing, resolve_precision
from services.trainer.metrics import Metrics
from services.trainer.parallel import Message, Replicas
from services.trainer.reference import Key, ReferenceTable, answer_key, build_reference, needs_reference
from services.trainer.selection import Pair, select_pair, with_advantages
from shared.config import DPOConfig, GRPOConfig, TrainerConfig
from shared.modeling import resolve_model
from shared.schemas import Episode, EpisodeGroup, WeightMode


@dataclass
class UpdateResult:
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


class Policy:
    """A float32 policy on CPU or GPU (float32 weights because at lr ~1e-5 bf16 updates round to nothing;
    the forward may compute in bf16, ``trainer.precision``), and its frozen reference (``reference.py``)."""

    def __init__(
        self,
        model_name: str,
        cfg: TrainerConfig,
        answer_tokens: int = 160,
        weights: Path | None = None,
        replicas: Replicas | None = None,
    ) -> None:
        """``weights``: a checkpoint to resume from; the reference stays the starting policy either way.
        ``replicas``: data parallel under ``accelerate launch`` (rank 0 tells the others to load the same)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg, self.answer_tokens, self.replicas = cfg, answer_tokens, replicas
        if replicas is not None and replicas.is_main:
            replicas.broadcast(Message("load", model_name, cfg, answer_tokens, weights))
        local = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.device = replicas.accelerator.device if replicas is not None else local
        base = resolve_model(model_name)
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.lora = cfg.weight_mode is WeightMode.lora
        model: Any
        if self.lora:
            model = adapter_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), cfg.lora, weights)
        else:
            model = AutoModelForCausalLM.from_pretrained(weights or base, dtype=torch.float32)
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        self.precision = resolve_precision(cfg, self.device)
        self.sharded = replicas is not None and replicas.sharded
        if self.sharded and self.lora:
            raise ValueError("sharding: fsdp trains full weights; a LoRA run replicates (sharding: replicate)")
        # Sharded: FSDP moves each layer to the device as it shards it, so the whole model never sits there.
        self.model: Any = (model if self.sharded else model.to(self.device)).train()
        # A LoRA policy's reference is itself with the adapter off; full weights: the starting policy.
        self.reference: Any = None
        if needs_reference(cfg) and not self.lora:
            self.reference = build_reference(base, cfg, self.device, sharded=self.sharded)
        if self.sharded:  # before the optimizer exists: it must hold the shards, not the whole weights
            sharding.shard(self.model, torch.bfloat16 if self.precision == "bf16" else None)
        self.precomputed = ReferenceTable()
        self.full_logits = False  # logits at every position: slower; tests and benchmarks compare it
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer: Any = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=0.0)
        # ``engine`` is what the loss runs through: the model itself (sharded or not), or its DDP wrapper.
        self.engine: Any = self.model
        if replicas is not None and not self.sharded:
            self.engine, self.optimizer = replicas.accelerator.prepare(self.model, self.optimizer)
        self._last: dict[str, float] = {}
        self.pad_id = int(self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0)

    def reference_logps(self, episodes: list[Episode]) -> torch.Tensor:
        """The frozen starting policy's log-probs at the completion columns: precomputed ones when the
        offline pass made them, else a forward of the reference (LoRA: the policy with its adapter off)."""
        if len(self.precomputed):
            table = self.precomputed.lookup([self._key(e) for e in episodes], self.device)
            if table is not None:
                return table
        with torch.no_grad():
            if self.lora:
                with self.model.disable_adapter():
                    return self._logps(self.model, episodes, record=False)[0]
            if self.reference is None:
                raise RuntimeError("the reference was freed after precomputing; this batch was not among them")
            return self._logps(self.reference, episodes)[0]

    def precompute_reference(self, groups: list[EpisodeGroup]) -> int:
        """Offline: the reference log-probs of every answer ``update`` will train on, computed now; then the
        reference is freed, so it never sits beside gradients and optimizer moments (TRL's
        ``precompute_ref_log_probs``). Returns how many answers are covered."""
        for chunk in self._micro_batches(self._items(groups)):
            episodes = [e for p in chunk for e in (p.chosen, p.rejected)] if isinstance(chunk[0], Pair) else chunk
            self.precomputed.add([self._key(e) for e in episodes], self.reference_logps(episodes))
        self.reference = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return len(self.precomputed)

    def _key(self, e: Episode) -> Key:
        return answer_key(*self.token_ids(e))

    def usable(self, group: EpisodeGroup) -> bool:
        """Whether a group carries a signal for the configured algorithm."""
        algo = self.cfg.algorithm
        if isinstance(algo, DPOConfig):
            return select_pair(group, algo.max_length_diff_words) is not None
        return bool(with_advantages(group, algo.scale_rewards))

    def update(self, groups: list[EpisodeGroup]) -> UpdateResult:
        """One optimizer step over ``groups``, in micro-batches whose gradients add up to the whole batch's."""
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        mine, weight = groups, 1.0
        if self.replicas is not None:
            if self.replicas.is_main:
                self.replicas.broadcast(Message("update", groups=groups))
            # A rank without a share still runs a forward (DDP's all-reduce needs every rank), at weight 0.
            mine = self.replicas.share(groups)
            mine, weight = (mine, 1.0) if mine else (groups[:1], 0.0)
        chunks = self._micro_batches(self._items(mine))
        units = [self._units(c) * weight for c in chunks]
        counted = len(chunks)
        if self.sharded and self.replicas is not None:  # every rank gathers each layer as often as the others
            padding = self.replicas.most(counted) - counted
            chunks, units = chunks + chunks[:1] * padding, units + [0.0] * padding
        # Each chunk's loss is a mean over its units (pairs, sequences or tokens); weighted by its share of
        # all units, on every rank (× world: the all-reduce averages), the gradients sum to the batch mean's.
        total, world = sum(units), 1
        if self.replicas is not None:
            total, world = self.replicas.total(total), self.replicas.world
        loss_value, metrics = 0.0, Metrics()
        for i, (chunk, chunk_units) in enumerate(zip(chunks, units, strict=True)):
            with self._no_sync(last=i == len(chunks) - 1):
                loss, chunk_metrics = self._loss(chunk)
                scaled = loss * (chunk_units * world / max(total, 1e-9))
                self._backward(scaled)
            loss_value += float(scaled.detach())
            if i < counted:
                metrics.add(chunk_metrics, chunk_units or 1.0)
        grad_norm = self._step()
        if self.replicas is not None:
            loss_value = self.replicas.total(loss_value) / world
        seconds = time.perf_counter() - started
        summary = metrics.summary()
        summary.update(
            tokens_per_second=summary.get("completion_tokens", 0.0) / max(seconds, 1e-9),
            loss=loss_value,
            grad_norm=grad_norm,
            micro_batches=float(counted),
            update_seconds=seconds,
        )
        return UpdateResult(loss_value, summary)

    def _items(self, groups: list[EpisodeGroup]) -> list[Any]:
        """What the loss is over: DPO's pairs, or GRPO's episodes with their advantages."""
        algo = self.cfg.algorithm
        if isinstance(algo, DPOConfig):
            return [p for g in groups if (p := select_pair(g, algo.max_length_diff_words)) is not None]
        return [e for g in groups for e in with_advantages(g, algo.scale_rewards)]

    def _micro_batches(self, items: list[Any]) -> list[list[Any]]:
        per = self.cfg.micro_batch_size
        if isinstance(self.cfg.algorithm, DPOConfig):
            per = max(1, per // 2)  # a pair is two sequences
        return [items[i : i + per] for i in range(0, len(items), per)] or [items]

    def _units(self, chunk: list[Any]) -> float:
        """What a chunk's loss is a mean over: tokens for ``dapo``, else sequences (GRPO) or pairs (DPO)."""
        algo = self.cfg.algorithm
        if isinstance(algo, GRPOConfig) and algo.loss_type == "dapo":
            return float(sum(len(self.token_ids(e)[1]) for e in chunk))
        return float(len(chunk))

    def _loss(self, chunk: list[Any]) -> tuple[torch.Tensor, dict[str, float]]:
        algo = self.cfg.algorithm
        return self._dpo(chunk, algo) if isinstance(algo, DPOConfig) else self._grpo(chunk, algo)

    def _no_sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """Data parallel: all-reduce once, on the last micro-batch (every rank has exactly one such)."""
        if self.replicas is None or last or self.sharded:  # FSDP reduce-scatters each micro-batch's gradients
            return contextlib.nullcontext()
        return self.replicas.accelerator.no_sync(self.engine)  # type: ignore[no-any-return]

    def _backward(self, loss: torch.Tensor) -> None:
        if self.replicas is None:
            loss.backward()
        else:
            self.replicas.accelerator.backward(loss)

    def _step(self) -> float:
        """Clip and step; through accelerate when data parallel."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.replicas is None or self.sharded:
            grad_norm = sharding.clip_grad_norm(params, self.cfg.max_grad_norm)
        else:
            grad_norm = self.replicas.accelerator.clip_grad_norm_(params, self.cfg.max_grad_norm)
        self.optimizer.step()
        return float(grad_norm) if grad_norm is not None else 0.0

    def token_ids(self, e: Episode) -> tuple[list[int], list[int]]:
        """The generator's own token ids; a teacher's answer (text only) is tokenized here, as the policy would."""
        return losses.episode_token_ids(self.tokenizer, e)

    def _logps(self, model: Any, episodes: list[Episode], record: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs and the completion mask, both (episodes, longest completion)."""
        prompts, completions = zip(*(self.token_ids(e) for e in episodes), strict=True)
        batch = losses.batch_inputs(list(prompts), list(completions), self.pad_id).to(self.device)
        logps, entropy = losses.token_logprobs(model, batch, self.precision, self.full_logits)
        mask = batch.mask
        if model is self.engine and record:
            tokens = mask.sum().clamp(min=1.0)
            self._last = {"entropy": float((entropy * mask).sum() / tokens), "completion_tokens": float(mask.sum())}
        return logps, mask

    def _dpo(self, pairs: list[Pair], algo: DPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss over the pairs, and metrics."""
        episodes = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        logps, mask = self._logps(self.engine, episodes)
        ref_logps = self.reference_logps(episodes)
        seq, ref_seq = (logps * mask).sum(1), (ref_logps * mask).sum(1)
        n = len(pairs)
        loss, margin = losses.dpo_loss(seq[:n], seq[n:], ref_seq[:n], ref_seq[n:], algo.beta)
        kl = float((losses.k3_kl(logps.detach(), ref_logps) * mask).sum() / mask.sum().clamp(min=1.0))
        return loss, {"pairs": float(n), "reward_margin": float(margin), "kl_reference": kl, **self._last}

    def _grpo(self, episodes: list[Episode], algo: GRPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss over the episodes' sequences (tokens for ``dapo``), and metrics."""
        logps, mask = self._logps(self.engine, episodes)
        # Behaviour log-probs come from the generator; an endpoint that returned none is taken as on-policy.
        old = logps.detach().clone()
        for i, e in enumerate(episodes):
            positions = mask[i].nonzero().flatten()
            if len(e.completion.logprobs) == len(positions):
                old[i, positions] = torch.tensor(e.completion.logprobs, dtype=old.dtype, device=old.device)
        advantages = torch.tensor([e.advantage or 0.0 for e in episodes], device=self.device)
        ref_logps = None
        if algo.kl_beta > 0:
            ref_logps = self.reference_logps(episodes)
        loss, clip_fraction = losses.grpo_loss(
            logps, old, advantages, mask, algo.clip_eps, algo.loss_type, ref_logps, algo.kl_beta, self.answer_tokens
        )
        tokens = mask.sum().clamp(min=1.0)
        metrics = {
            "episodes": float(len(episodes)),
            "clip_fraction": float(clip_fraction),
            "kl_behaviour": float(((old - logps.detach()) * mask).sum() / tokens),
        }
        if ref_logps is not None:
            metrics["kl_reference"] = float((losses.k3_kl(logps.detach(), ref_logps) * mask).sum() / tokens)
        return loss, {**metrics, **self._last}

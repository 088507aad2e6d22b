"""The model side of training: load the policy (and DPO's frozen reference), and one update."""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from services.trainer import losses
from services.trainer.selection import select_pair, with_advantages
from shared.config import DPOConfig, GRPOConfig, TrainerConfig
from shared.modeling import resolve_model
from shared.schemas import Episode, EpisodeGroup, WeightMode


@dataclass
class UpdateResult:
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


class Policy:
    """A float32 policy on CPU or GPU: float32 because at lr ~1e-5 bf16 updates round to nothing."""

    def __init__(
        self, model_name: str, cfg: TrainerConfig, answer_tokens: int = 160, weights: Path | None = None
    ) -> None:
        """``weights``: a checkpoint to resume from; the reference stays the starting policy either way."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg, self.answer_tokens = cfg, answer_tokens
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        base = resolve_model(model_name)
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.lora = cfg.weight_mode is WeightMode.lora
        model: Any
        if self.lora:
            model = self._adapter_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), weights)
        else:
            model = AutoModelForCausalLM.from_pretrained(weights or base, dtype=torch.float32)
        self.model: Any = model.to(self.device).train()
        self.reference: Any = None
        needs_reference = isinstance(cfg.algorithm, DPOConfig) or cfg.algorithm.kl_beta > 0
        if needs_reference and not self.lora:  # a LoRA policy's reference is itself with the adapter off
            start: Any = model
            if weights is not None:
                start = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
            self.reference = copy.deepcopy(start).to(self.device).eval().requires_grad_(False)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=0.0)
        self._last: dict[str, float] = {}
        self.pad_id = int(self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0)

    def _adapter_model(self, base_model: Any, weights: Path | None) -> Any:
        from peft import LoraConfig, PeftModel, get_peft_model

        if weights is not None:
            return PeftModel.from_pretrained(base_model, weights, is_trainable=True)
        spec = self.cfg.lora
        config = LoraConfig(
            r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
            target_modules=spec.target_modules, task_type="CAUSAL_LM",
        )  # fmt: skip
        return get_peft_model(base_model, config)

    def reference_logps(self, episodes: list[Episode]) -> torch.Tensor:
        """The frozen starting policy's log-probs: a copy for full fine-tuning, the adapter switched off for LoRA."""
        with torch.no_grad():
            if not self.lora:
                return self._logps(self.reference, episodes)[0]
            with self.model.disable_adapter():
                return self._logps(self.model, episodes, record=False)[0]

    def state(self) -> dict[str, Any]:
        """What a resumed trainer needs besides the weights: optimizer moments and RNG streams."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])

    def usable(self, group: EpisodeGroup) -> bool:
        """Whether a group carries a signal for the configured algorithm."""
        algo = self.cfg.algorithm
        if isinstance(algo, DPOConfig):
            return select_pair(group, algo.max_length_diff_words) is not None
        return bool(with_advantages(group, algo.scale_rewards))

    def update(self, groups: list[EpisodeGroup]) -> UpdateResult:
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        algo = self.cfg.algorithm
        if isinstance(algo, DPOConfig):
            loss, metrics = self._dpo(groups, algo)
        else:
            loss, metrics = self._grpo(groups, algo)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        seconds = time.perf_counter() - started
        metrics.update(self._last)
        metrics.update(
            tokens_per_second=self._last.get("completion_tokens", 0.0) / max(seconds, 1e-9),
            loss=float(loss.detach()),
            grad_norm=float(grad_norm),
            update_seconds=time.perf_counter() - started,
        )
        return UpdateResult(float(loss.detach()), metrics)

    def token_ids(self, e: Episode) -> tuple[list[int], list[int]]:
        """The generator's own token ids; a teacher's answer (text only) is tokenized here, as the policy would."""
        prompt = list(e.prompt_token_ids)
        if not prompt:
            messages = [m.model_dump() for m in e.prompt_messages]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            prompt = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        completion = list(e.completion.token_ids)
        if not completion:
            completion = list(self.tokenizer(e.completion.text, add_special_tokens=False)["input_ids"])
            if e.completion.finish_reason == "stop" and self.tokenizer.eos_token_id is not None:
                completion.append(int(self.tokenizer.eos_token_id))
        return prompt, completion

    def _logps(self, model: Any, episodes: list[Episode], record: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        prompts, completions = zip(*(self.token_ids(e) for e in episodes), strict=True)
        ids, attention, mask = losses.batch_inputs(list(prompts), list(completions), self.pad_id)
        ids, attention, mask = ids.to(self.device), attention.to(self.device), mask.to(self.device)
        logps, entropy = losses.token_logprobs(model, ids, attention)
        if model is self.model and record:
            tokens = mask.sum().clamp(min=1.0)
            self._last = {"entropy": float((entropy * mask).sum() / tokens), "completion_tokens": float(mask.sum())}
        return logps, mask

    def _dpo(self, groups: list[EpisodeGroup], algo: DPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
        pairs = [p for g in groups if (p := select_pair(g, algo.max_length_diff_words)) is not None]
        episodes = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        logps, mask = self._logps(self.model, episodes)
        ref_logps = self.reference_logps(episodes)
        seq, ref_seq = (logps * mask).sum(1), (ref_logps * mask).sum(1)
        n = len(pairs)
        loss, margin = losses.dpo_loss(seq[:n], seq[n:], ref_seq[:n], ref_seq[n:], algo.beta)
        kl = float((losses.k3_kl(logps.detach(), ref_logps) * mask).sum() / mask.sum().clamp(min=1.0))
        return loss, {"pairs": float(n), "reward_margin": float(margin), "kl_reference": kl}

    def _grpo(self, groups: list[EpisodeGroup], algo: GRPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
        episodes = [e for g in groups for e in with_advantages(g, algo.scale_rewards)]
        logps, mask = self._logps(self.model, episodes)
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
        return loss, metrics

"""The training loop behind `mixzoo train` and every grid run.

    cfg = TrainConfig(task={"type": "mqar", "seq_len": 128, "num_kv_pairs": 8},
                      steps=500, batch_size=32, lr=3e-3)
    summary = train(model, cfg)                  # -> {"final": {...}, "best": {...}, ...}

AdamW (no decay on norms, biases and gains), linear warmup then cosine decay, gradient
clipping, bf16 autocast on CUDA, evaluation on a held-out set every `eval_every` steps, an
optional early stop at a target metric, and seeds fixed end to end: the same config on
the same device gives the same numbers.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator, model_validator
from torch import nn

from mixzoo.tasks import Task, TaskConfig, build_task, build_task_config

__all__ = ["EarlyStop", "TrainConfig", "TrainingDiverged", "train", "train_recipe",
           "resolve_device"]

# The held-out set is drawn from its own generator stream, far from the training stream.
_EVAL_SEED_OFFSET = 1_000_003


class EarlyStop(BaseModel):
    """Stop once `metric` (an eval metric, e.g. accuracy) reaches `value`."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str = "accuracy"
    value: float
    mode: Literal["max", "min"] = "max"      # "max": stop when metric >= value

    def reached(self, metrics: dict[str, float]) -> bool:
        if self.metric not in metrics:
            raise KeyError(f"early_stop.metric {self.metric!r} is not among the eval metrics "
                           f"{sorted(metrics)}")
        x = metrics[self.metric]
        return x >= self.value if self.mode == "max" else x <= self.value


class TrainConfig(BaseModel):
    """Everything a training run needs besides the model (the recipe's `train:` section)."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    # A task spec: a registry name or a dict with `type` (validated by the task registry).
    task: SerializeAsAny[TaskConfig] = Field(default_factory=lambda: build_task_config("mqar"))
    steps: int = Field(1000, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-3, gt=0)
    # Decoupled weight decay on matrices only (norm gains and biases are never decayed).
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = Field(100, ge=0)
    # Cosine decays from lr to lr * min_lr_ratio at the last step.
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float | None = Field(1.0, gt=0)
    eval_every: int = Field(100, gt=0)
    eval_batches: int = Field(4, gt=0)
    eval_batch_size: int | None = Field(None, gt=0)      # None = batch_size
    seed: int = 0
    device: str = "auto"                                 # "auto" | "cpu" | "cuda" | "cuda:N"
    # bf16 = autocast to bf16 on CUDA; on CPU the run stays in fp32 (CPU bf16 is slow).
    dtype: Literal["fp32", "bf16"] = "bf16"
    early_stop: EarlyStop | None = None

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, v: Any) -> TaskConfig:
        try:
            return build_task_config(v)
        except KeyError as e:            # unknown task type: keep the close-match message
            raise ValueError(e.args[0]) from None

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {v!r}")
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} exceeds steps={self.steps}")
        return self


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} asked for, but CUDA is not available here")
    return dev


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:                 # step = optimizer steps done so far
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(cfg.steps - cfg.warmup_steps, 1)
        progress = min((step - cfg.warmup_steps) / span, 1.0)
        cos = 0.5 * (1 + math.cos(math.pi * progress))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos
    return f


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, batches: list[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device, autocast: bool, head: nn.Module | None = None
             ) -> dict[str, float]:
    """Mean eval loss and task metrics over the held-out batches."""
    was_training = model.training
    model.eval()
    if head is not None:
        head.eval()
    sums: dict[str, float] = {}
    for inputs, targets in batches:
        inputs, targets = inputs.to(device), targets.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits, loss = task.logits_and_loss(model, inputs, targets)
        row = {"eval_loss": loss.item(), **task.metric(logits.float(), targets)}
        for k, v in row.items():
            sums[k] = sums.get(k, 0.0) + v
    model.train(was_training)
    if head is not None:
        head.train(was_training)
    return {k: v / len(batches) for k, v in sums.items()}


def _fmt(row: dict[str, Any]) -> str:
    parts = []
    for k, v in row.items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def train(model: nn.Module, cfg: TrainConfig, *, progress: bool = True,
          metrics_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train `model` (a causal LM: `model(ids, labels=...) -> .logits, .loss`) on cfg.task.

    Returns a summary: {"final": last eval row, "best": eval row with the best primary
    metric, "metric": its name, "steps": steps run, "early_stopped", "train_time_s",
    "num_params", "history": every eval row}. Each eval row is also printed (when
    `progress`) and appended to `metrics_path` as one JSON line (the file is truncated
    first). Raises `TrainingDiverged` when the loss is NaN or infinite.
    """
    task = build_task(cfg.task)
    model_vocab = getattr(model, "vocab_size", None)
    if model_vocab is not None and model_vocab < task.vocab_size:
        raise ValueError(f"the model's vocab_size={model_vocab} is smaller than the task's "
                         f"vocab_size={task.vocab_size} ({cfg.task.type}); set "
                         f"model.vocab_size={task.vocab_size}")
    device = resolve_device(cfg.device)
    autocast = cfg.dtype == "bf16" and device.type == "cuda"
    torch.manual_seed(cfg.seed)             # dropout / drop_path randomness
    train_gen = torch.Generator().manual_seed(cfg.seed)
    eval_gen = torch.Generator().manual_seed(cfg.seed + _EVAL_SEED_OFFSET)
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    eval_set = [task.sample(eval_bs, eval_gen) for _ in range(cfg.eval_batches)]

    model.to(device)
    model.train()
    head = task.make_head(model)            # None unless the task reads the model its own way
    trained: nn.Module = model
    if head is not None:
        head.to(device).train()
        trained = nn.ModuleList([model, head])
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(_param_groups(trained, cfg.weight_decay), lr=cfg.lr,
                            betas=cfg.betas, fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    num_params = sum(p.numel() for p in model.parameters())

    sink = None
    if metrics_path is not None:
        Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
        sink = open(metrics_path, "w", encoding="utf-8")
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, desc=f"train {cfg.task.type}", unit="step",
                   dynamic_ncols=True, file=sys.stderr)
    say = (bar.write if bar is not None else None)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    early = False
    loss_sum, loss_n = 0.0, 0
    t0 = time.perf_counter()
    step = 0
    try:
        for step in range(1, cfg.steps + 1):
            inputs, targets = task.sample(cfg.batch_size, train_gen)
            inputs, targets = inputs.to(device), targets.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                _, loss = task.logits_and_loss(model, inputs, targets)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss is {loss.item()} at step {step}/{cfg.steps} (lr="
                    f"{sched.get_last_lr()[0]:.3g}); lower lr, raise warmup_steps, or set "
                    f"grad_clip")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(trained.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            loss_sum += loss.item()
            loss_n += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)

            if step % cfg.eval_every == 0 or step == cfg.steps:
                row = {"step": step, "train_loss": loss_sum / loss_n,
                       **evaluate(model, task, eval_set, device, autocast, head),
                       "lr": sched.get_last_lr()[0],
                       "elapsed_s": round(time.perf_counter() - t0, 3)}
                loss_sum, loss_n = 0.0, 0
                history.append(row)
                key = task.primary_metric
                if best is None or row[key] > best[key]:
                    best = row
                if say is not None:
                    say(_fmt(row))
                if sink is not None:
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                if cfg.early_stop is not None and cfg.early_stop.reached(row):
                    early = True
                    break
    finally:
        if bar is not None:
            bar.close()
        if sink is not None:
            sink.close()
    return {"final": history[-1], "best": best, "metric": task.primary_metric,
            "steps": step, "early_stopped": early,
            "train_time_s": round(time.perf_counter() - t0, 3),
            "num_params": num_params, "history": history}


def train_recipe(recipe: Any, *, progress: bool = True,
                 run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Build the recipe's model (seeded by `recipe.train.seed`) and train it with
    `recipe.train`. With `run_dir`, metrics go to `run_dir/metrics.jsonl`."""
    from mixzoo import build_model
    cfg = getattr(recipe, "train", None)
    if cfg is None:
        raise ValueError("the recipe has no `train:` section; add one (task, steps, "
                         "batch_size, lr, ...) to train it")
    torch.manual_seed(cfg.seed)              # model init is part of the seeded run
    model = build_model(recipe)
    metrics_path = Path(run_dir) / "metrics.jsonl" if run_dir is not None else None
    summary = train(model, cfg, progress=progress, metrics_path=metrics_path)
    state_size = _state_size(model, cfg)
    if state_size is not None:
        summary["state_size"] = state_size
    return summary


def _state_size(model: nn.Module, cfg: TrainConfig) -> int | None:
    """Inference-state elements per sequence at the task's seq_len, if the model says."""
    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(backbone, "state_size"):
        return None
    return int(backbone.state_size(build_task(cfg.task).seq_len))

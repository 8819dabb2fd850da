"""The task contract: a synthetic sequence task generated on the fly, deterministic by seed.

A task turns a torch.Generator into a batch of token ids and aligned targets:

    inputs, targets = task.sample(batch, generator)     # both long [B,T]
    # position t of a causal LM predicts targets[:, t]; -100 marks positions not scored
    metrics = task.metric(logits, targets)               # {"accuracy": ..., ...}

Adding a task is one file: a `Task` subclass with a nested `Config(TaskConfig)` whose
`type: Literal["name"]` is the registry key, decorated with `@register_task`.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

IGNORE = -100          # target value of positions that are not scored (CrossEntropy's default)


class TaskConfig(BaseModel):
    """Base of every task Config. Subclasses add `type: Literal["name"] = "name"`."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    vocab_size: int = Field(256, gt=1)
    seq_len: int = Field(128, gt=1)


class Task:
    """Base class. Subclasses define `Config` and implement `sample` (and `metric` if the
    default masked token accuracy is not the right score; `make_head`/`logits_and_loss` if the
    task reads the model some other way than through its LM head)."""

    Config: ClassVar[type[TaskConfig]] = TaskConfig
    # "tokens": long [B,T] ids in, aligned long [B,T] targets (the contract tests cover
    # these); other kinds (e.g. "images") define their own logits_and_loss and tests.
    input_kind: ClassVar[str] = "tokens"
    # The metric a grid reports as "final"/"best" and early stopping watches by default.
    primary_metric: ClassVar[str] = "accuracy"

    def __init__(self, config: TaskConfig):
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} expects a {self.Config.__qualname__}, "
                            f"got {type(config).__name__}")
        self.config = config

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def seq_len(self) -> int:
        return self.config.seq_len

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`batch` fresh examples drawn with `generator` (CPU): (inputs, targets), long [B,T]."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample")

    def make_head(self, model: nn.Module) -> nn.Module | None:
        """Extra trainable modules through which the task reads the model (None: the
        model's own outputs suffice). The training loop calls this once per run, trains
        the head with the model, and `logits_and_loss` uses it (see `compression.py`)."""
        return None

    def logits_and_loss(self, model: nn.Module, inputs: torch.Tensor,
                        targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, loss) for a batch. Default (token tasks): the causal LM's next-token
        logits [B,T,V] and its cross-entropy on the scored positions."""
        out = model(inputs, labels=targets)
        return out.logits, out.loss

    @torch.no_grad()
    def metric(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Default score: accuracy of argmax on the scored positions, and the fraction of
        sequences whose scored positions are all right."""
        return masked_accuracy(logits, targets)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.config.model_dump(exclude={"type"}).items())
        return f"{type(self).__name__}({fields})"


@torch.no_grad()
def masked_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """logits [B,T,V], targets [B,T] with IGNORE on unscored positions.

    accuracy: right predictions / scored positions (over the whole batch).
    sequence_accuracy: fraction of sequences with every scored position right
    (sequences with nothing scored are left out).
    """
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"metric: logits {tuple(logits.shape)} do not match targets "
                         f"{tuple(targets.shape)} on [B,T]")
    mask = targets != IGNORE                                  # [B,T]
    right = (logits.argmax(-1) == targets) & mask             # [B,T]
    n = mask.sum()
    if n == 0:
        raise ValueError("metric: no scored positions (all targets are -100)")
    per_seq = mask.sum(1) > 0                                 # [B]
    seq_ok = (right.sum(1) == mask.sum(1)) & per_seq
    return {"accuracy": (right.sum() / n).item(),
            "sequence_accuracy": (seq_ok.sum() / per_seq.sum()).item()}


def distinct_tokens(batch: int, n: int, low: int, high: int,
                    generator: torch.Generator) -> torch.Tensor:
    """[batch, n] tokens drawn without replacement from [low, high) independently per row."""
    if high - low < n:
        raise ValueError(f"need {n} distinct tokens from [{low}, {high}), only {high - low} exist")
    scores = torch.rand(batch, high - low, generator=generator)
    return scores.argsort(dim=1)[:, :n] + low                 # [B,n]

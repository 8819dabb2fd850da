"""image_match: do two marked patches far apart in an image carry the same pattern?

A synthetic image task that needs long-range spatial reasoning, generated on the fly (no
download), deterministic by seed, small enough to compare vision mixers on a CPU:

    +---+---+---+---+---+---+---+---+     img_size x img_size pixels, patch_size patches,
    |   | d |   |   |   |   |   |   |     Gaussian background noise.
    +---+---+---+---+---+---+---+---+     [M] two *marked* patches (a bright frame around
    |[M]|   |   |   |   | d |   |   |         the patch) at least `min_distance` patches
    +---+---+---+---+---+---+---+---+         apart (Chebyshev), each holding a pattern
    |   |   |   | d |   |   |   |[M]|         from a fixed codebook of `num_patterns`;
    +---+---+---+---+---+---+---+---+     d   `num_distractors` unmarked patches holding
                                              codebook patterns too (often the same ones).

label = 1 if the two marked patches hold the same pattern, else 0 (balanced). Recognising a
marked patch is local, but the answer needs the two patterns side by side, which are far
apart: a model must carry one patch's content across the image. Distractors repeat
patterns, so "is any pattern repeated?" is no shortcut. Chance is 50% accuracy.

Inputs are images `float [B, channels, img_size, img_size]` and targets class labels
`long [B]`, so the model is an image classifier with `num_classes = 2`: a recipe of kind
`vision` with `model.vision: {img_size: 32, patch_size: 4, num_classes: 2}`.
`logits_and_loss(model, inputs, targets)` runs such a model (`model(images) -> [B, 2]`).

Difficulty. Like every same/different task, this one is learned after a plateau at 50%
whose length grows steeply with the number of tokens and the noise. Measured on a CPU with
a ViT of width 64, depth 4, avg pooling, AdamW lr 1e-3, batch 64:
- the defaults (16 px, 4 px patches: 4x4 tokens, 2 patterns, no noise or distractors,
  marks >= 2 patches apart): timm softmax attention 100% and bidirectional DeltaNet 99%
  held-out accuracy by step 300 (both at 50% at step 200);
- 24-32 px (36-64 tokens), 2-8 patterns, noise 0-0.5, 0-4 distractors, 1x1 to 3x3 marks:
  attention was still at 50% after 350-800 steps.
So the defaults compare mixers within a CPU budget; the larger settings need more steps
(or a GPU) and are where long-range mixing matters most.
"""
from __future__ import annotations

from functools import cached_property
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from .base import Task, TaskConfig
from .registry import register_task


def mark_pairs(g: int, k: int, d: int) -> torch.Tensor:
    """[P, 2, k*k]: row-major patch indices of two k x k marks on a g x g grid, over every
    ordered placement whose closest patches are >= d apart in 2D (Chebyshev) and in the
    row-major and column-major token order."""
    origins = [(r, c) for r in range(g - k + 1) for c in range(g - k + 1)]
    cells = torch.tensor([[(r + i, c + j) for i in range(k) for j in range(k)]
                          for r, c in origins])                          # [O, k*k, 2]
    a, b = cells[:, None, :, None], cells[None, :, None, :]              # [O,1,kk,1,2] ...
    cheb = (a - b).abs().amax(-1)                                        # [O,O,kk,kk]
    rowm = (a[..., 0] * g + a[..., 1] - b[..., 0] * g - b[..., 1]).abs()
    colm = (a[..., 1] * g + a[..., 0] - b[..., 1] * g - b[..., 0]).abs()
    far = torch.minimum(torch.minimum(cheb, rowm), colm).flatten(2).amin(-1) >= d  # [O,O]
    ia, ib = far.nonzero(as_tuple=True)
    idx = cells[..., 0] * g + cells[..., 1]                              # [O, k*k]
    return torch.stack([idx[ia], idx[ib]], dim=1)                        # [P, 2, k*k]


@register_task
class ImageMatch(Task):
    """Binary classification: do the two marked patches match? (module docstring)"""

    # Not a token task: inputs are images, targets class labels (the token-task contract
    # tests select tasks with input_kind == "tokens").
    input_kind: ClassVar[str] = "images"

    class Config(TaskConfig):
        type: Literal["image_match"] = "image_match"
        # The token fields of TaskConfig, pinned to what they mean here: 2 classes, and
        # seq_len = the number of patch tokens (None = derived from img_size/patch_size).
        vocab_size: Literal[2] = 2
        seq_len: int | None = Field(None, gt=0)
        # The defaults are the setting measured to be learnable in a few hundred CPU steps
        # (see "Difficulty" in the module docstring); raise img_size, num_patterns, noise
        # and num_distractors for a harder, longer-range comparison.
        img_size: int = Field(16, gt=0)
        patch_size: int = Field(4, ge=3)
        channels: int = Field(3, ge=1)
        # Codebook size: more patterns = finer comparisons.
        num_patterns: int = Field(2, ge=2)
        # Unmarked patches that also carry codebook patterns.
        num_distractors: int = Field(0, ge=0)
        # Each mark is a block_size x block_size block of patches with the same pattern.
        block_size: int = Field(1, ge=1)
        # Minimum distance (in patches) between any patch of one mark and any patch of the
        # other: Chebyshev in 2D *and* in both flattenings (row-major and column-major
        # token index), so no scan order puts the two marks close together (a row-major
        # scan would otherwise make (r, G-1) and (r+1, 0) neighbours). None = grid // 2.
        min_distance: int | None = Field(None, ge=1)
        noise: float = Field(0.0, ge=0)
        # Seed of the fixed codebook (the same patterns in training and evaluation).
        pattern_seed: int = 0

        @model_validator(mode="after")
        def _check(self):
            s, p = self.img_size, self.patch_size
            if s % p:
                raise ValueError(f"img_size={s} must be a multiple of patch_size={p}")
            g = s // p
            if self.seq_len is not None and self.seq_len != g * g:
                raise ValueError(f"seq_len={self.seq_len} must equal the number of patches "
                                 f"(img_size/patch_size)^2 = {g * g}, or be left unset")
            d = self.min_distance if self.min_distance is not None else g // 2
            k = self.block_size
            if not len(mark_pairs(g, k, d)):
                raise ValueError(f"min_distance={d} is impossible for two {k}x{k} marks on a "
                                 f"{g}x{g} patch grid")
            if 2 * k * k + self.num_distractors > g * g:
                raise ValueError(f"{2 * k * k + self.num_distractors} patches do not fit on a "
                                 f"{g}x{g} grid")
            return self

    @property
    def grid(self) -> int:
        return self.config.img_size // self.config.patch_size

    @property
    def seq_len(self) -> int:           # patch tokens a ViT sees
        return self.grid ** 2

    @property
    def vocab_size(self) -> int:        # no tokens; the number of classes
        return 2

    @property
    def num_classes(self) -> int:
        return 2

    @property
    def min_distance(self) -> int:
        c = self.config
        return c.min_distance if c.min_distance is not None else self.grid // 2

    @cached_property
    def codebook(self) -> torch.Tensor:
        """[num_patterns, C, p-2, p-2] unit-variance patterns (the frame is the marker)."""
        c = self.config
        g = torch.Generator().manual_seed(c.pattern_seed)
        inner = c.patch_size - 2
        return torch.randn(c.num_patterns, c.channels, inner, inner, generator=g)

    @cached_property
    def _pairs(self) -> torch.Tensor:
        """[P, 2, k*k] row-major patch indices of the two marks, for every valid placement."""
        return mark_pairs(self.grid, self.config.block_size, self.min_distance)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(images float [B,C,S,S], labels long [B]) drawn with `generator`."""
        c, g, p = self.config, self.grid, self.config.patch_size
        n = g * g
        labels = torch.randint(0, 2, (batch,), generator=generator)           # [B]
        pair = self._pairs[torch.randint(0, len(self._pairs), (batch,), generator=generator)]
        marks = pair.flatten(1)                                               # [B,2k^2]
        kk = pair.shape[2]
        # Patterns of the two marked patches: equal when label = 1, different otherwise.
        pa = torch.randint(0, c.num_patterns, (batch,), generator=generator)
        shift = torch.randint(1, c.num_patterns, (batch,), generator=generator)
        pb = torch.where(labels.bool(), pa, (pa + shift) % c.num_patterns)
        # Distractor positions: random patches other than the two marked ones.
        scores = torch.rand(batch, n, generator=generator)                    # [B,N]
        scores.scatter_(1, marks, 2.0)                                        # marked last
        dpos = scores.argsort(1)[:, :c.num_distractors]                       # [B,nd]
        dpat = torch.randint(0, c.num_patterns, (batch, c.num_distractors), generator=generator)

        patches = torch.randn(batch, n, c.channels, p, p, generator=generator) * c.noise
        inner = patches[:, :, :, 1:-1, 1:-1]                                  # [B,N,C,p-2,p-2]
        rows = torch.arange(batch)
        inner[rows[:, None], dpos] += self.codebook[dpat]
        inner[rows[:, None], pair[:, 0]] += self.codebook[pa][:, None].expand(-1, kk, -1, -1, -1)
        inner[rows[:, None], pair[:, 1]] += self.codebook[pb][:, None].expand(-1, kk, -1, -1, -1)
        frame = torch.ones(p, p, dtype=torch.bool)
        frame[1:-1, 1:-1] = False
        # The marker: a bright frame around every patch of both marks.
        patches[rows[:, None], marks] = torch.where(frame, 3.0, patches[rows[:, None], marks])
        # [B, G, G, C, p, p] -> [B, C, G*p, G*p]
        images = patches.reshape(batch, g, g, c.channels, p, p).permute(0, 3, 1, 4, 2, 5)
        return images.reshape(batch, c.channels, g * p, g * p).contiguous(), labels

    def logits_and_loss(self, model: nn.Module, inputs: torch.Tensor,
                        targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run an image classifier: logits [B,2] = model(images), cross-entropy loss."""
        logits = model(inputs)
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"image_match needs a classifier with {self.num_classes} outputs "
                             f"(e.g. model.vision.num_classes: 2), got logits of shape "
                             f"{tuple(logits.shape)}")
        return logits, F.cross_entropy(logits.float(), targets)

    @torch.no_grad()
    def metric(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """accuracy: argmax(logits [B,2]) == labels [B] (chance 0.5)."""
        if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
            raise ValueError(f"metric: expected logits [B,2] and labels [B], got "
                             f"{tuple(logits.shape)} and {tuple(targets.shape)}")
        return {"accuracy": (logits.argmax(-1) == targets).float().mean().item()}

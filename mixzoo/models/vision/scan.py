"""2D scan orders: in which order a sequence mixer reads the patches of an image.

A ViT flattens its H x W patch grid row by row (row-major). A causal scan over that order
sees, for each patch, the rows above it and the patches to its left; a bidirectional scan
(forward + reversed, `causal=False`) sees every patch. Vision Mamba / VMamba-style models
also scan column by column, or alternate orders across layers, so that neighbours in both
image axes are close in at least one scan. The orders offered here:

    "row"      row-major, left to right, top to bottom (timm's own order: a no-op)
    "row_rev"  row-major reversed (bottom-right first)
    "col"      column-major, top to bottom, left to right
    "col_rev"  column-major reversed

Prefix tokens (class token, register tokens) always stay in front of the patches, in their
own order: only the patch tokens are permuted. With a bidirectional mixer the reversed scan
reads the class token last, after every patch, so the class token sees the whole image.

`permute(x, order, grid, num_prefix)` reorders x[B, P+H*W, D] into scan order and
`unpermute` undoes it; `y = unpermute(mixer(permute(x)))` keeps timm's token order outside.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal, get_args

import torch

ScanOrder = Literal["row", "row_rev", "col", "col_rev"]
SCAN_ORDERS: tuple[str, ...] = get_args(ScanOrder)


def check_order(order: str) -> str:
    if order not in SCAN_ORDERS:
        raise ValueError(f"scan order: expected one of {list(SCAN_ORDERS)}, got {order!r}")
    return order


def needs_grid(order: str) -> bool:
    """Row-major orders are a flip of the sequence at most; column orders need H and W."""
    return check_order(order) in ("col", "col_rev")


@lru_cache(maxsize=64)
def _index(order: str, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(perm, inverse) over the h*w patch positions (CPU long tensors), None for "row"."""
    if order == "row":
        return None
    grid = torch.arange(h * w).reshape(h, w)              # [H,W]: row-major position ids
    if order == "row_rev":
        perm = grid.reshape(-1).flip(0)
    elif order == "col":
        perm = grid.t().reshape(-1)                       # [W*H]: down each column
    else:  # col_rev
        perm = grid.t().reshape(-1).flip(0)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return perm, inv


def _split(x: torch.Tensor, grid: tuple[int, int] | None, num_prefix: int, order: str):
    n = x.shape[1] - num_prefix
    if n < 0:
        raise ValueError(f"scan: {x.shape[1]} tokens but num_prefix_tokens={num_prefix}")
    if not needs_grid(order):
        return n, 1
    if grid is None or grid[0] * grid[1] != n:
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(
                f"scan order {order!r} needs the patch grid: got {n} patch tokens (after "
                f"{num_prefix} prefix tokens), which is not a square and does not match the "
                f"bound grid {grid}; bind the model's layout with "
                f"mixzoo.models.vision.bind_layout(model) (with dynamic_img_size, column "
                f"orders need square images or the bound size)")
        return side, side
    return grid


def permute(x: torch.Tensor, order: str, grid: tuple[int, int] | None,
            num_prefix: int) -> torch.Tensor:
    """x [B, P+H*W, D] in timm (row-major) order -> the same tokens in scan order."""
    if order == "row":
        return x
    h, w = _split(x, grid, num_prefix, order)
    perm, _ = _index(order, h, w)
    patches = x[:, num_prefix:].index_select(1, perm.to(x.device))  # [B,H*W,D] scan order
    return torch.cat([x[:, :num_prefix], patches], dim=1) if num_prefix else patches


def unpermute(y: torch.Tensor, order: str, grid: tuple[int, int] | None,
              num_prefix: int) -> torch.Tensor:
    """Inverse of `permute`: y [B, P+H*W, D] in scan order -> timm's row-major order."""
    if order == "row":
        return y
    h, w = _split(y, grid, num_prefix, order)
    _, inv = _index(order, h, w)
    patches = y[:, num_prefix:].index_select(1, inv.to(y.device))  # [B,H*W,D] row-major
    return torch.cat([y[:, :num_prefix], patches], dim=1) if num_prefix else patches

"""Shared helpers for the per-mixer tests: independent by-hand references."""
import pytest
import torch


def _rope_by_hand(x, offset, theta):
    """RoPE via complex numbers: channel i pairs with i + D/2, rotated by pos * theta^(-2i/D).
    x [B,T,H,D] -> same (an implementation independent of mixzoo's apply_rotary)."""
    B, T, H, D = x.shape
    half = D // 2
    z = torch.complex(x[..., :half].double(), x[..., half:].double())   # [B,T,H,D/2]
    freq = theta ** (-torch.arange(half, dtype=torch.float64) * 2 / D)  # [D/2]
    pos = torch.arange(offset, offset + T, dtype=torch.float64)
    z = z * torch.polar(torch.ones(T, half, dtype=torch.float64), pos[:, None] * freq)[:, None]
    return torch.cat([z.real, z.imag], -1).to(x.dtype)


@pytest.fixture
def rope_by_hand():
    return _rope_by_hand


def _head_group_norm(o, weight, bias, eps):
    """o [B,T,H,V] -> per-head mean/variance norm with per-channel affine, [B,T,H*V]."""
    B, T, H, V = o.shape
    mu = o.mean(-1, keepdim=True)
    var = o.var(-1, unbiased=False, keepdim=True)
    y = ((o - mu) / torch.sqrt(var + eps)).reshape(B, T, H * V)
    return y * weight + bias


@pytest.fixture
def head_group_norm_by_hand():
    return _head_group_norm


def _attention_by_hand(m, x, rope, mask):
    """Softmax attention with GQA (query head h reads kv head h // (H/Hkv)); mask [T,T]."""
    c = m.config
    B, T, _ = x.shape
    H, Hkv, D = m.H, m.Hkv, m.D
    x = x.double()
    q = (x @ m.q_proj.weight.double().T).reshape(B, T, H, D)
    k = (x @ m.k_proj.weight.double().T).reshape(B, T, Hkv, D)
    v = (x @ m.v_proj.weight.double().T).reshape(B, T, Hkv, D)
    if c.rotary:
        q, k = rope(q, 0, c.rope_theta), rope(k, 0, c.rope_theta)
    kv_head = torch.arange(H) // (H // Hkv)
    k, v = k[:, :, kv_head], v[:, :, kv_head]  # [B,T,H,D]
    s = torch.einsum("bihd,bjhd->bhij", q, k) / D ** 0.5
    p = s.masked_fill(~mask, float("-inf")).softmax(-1)
    o = torch.einsum("bhij,bjhd->bihd", p, v).reshape(B, T, H * D)
    return o @ m.o_proj.weight.double().T


@pytest.fixture
def attention_by_hand():
    return _attention_by_hand

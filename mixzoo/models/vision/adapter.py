"""Any mixzoo mixer as a drop-in for timm's `Attention`.

    >>> import mixzoo, timm
    >>> Attn = mixzoo.timm_attn("deltanet", causal=False)     # a class, as timm requires
    >>> vit = timm.create_model("vit_small_patch16_224", attn_layer=Attn, qkv_bias=False,
    ...                         class_token=False, global_pool="avg")

timm builds `attn_layer(dim, num_heads=..., qkv_bias=..., qk_norm=..., scale_norm=...,
proj_bias=..., attn_drop=..., proj_drop=..., norm_layer=...)` and calls it as
`attn(x[B,N,D], attn_mask=None, is_causal=False) -> [B,N,D]`. `MixerAttention` takes exactly
those arguments, honours the ones that have a meaning for a mixer and raises a ValueError
naming the argument for the ones it cannot honour:

    dim              the mixer's d_model
    num_heads        the mixer's num_heads, unless the mixer spec sets it explicitly
    qkv_bias         a zero-initialised bias on the mixer's q/k/v projections
    proj_bias        a zero-initialised bias on the mixer's output projection
    proj_drop        dropout on the output, as in timm
    device, dtype    where the parameters live
    attn_head_dim    only if equal to dim // num_heads (mixer widths derive from d_model)
    dim_out          only None or dim (a mixer maps D -> D)
    qk_norm, scale_norm, gated      only False (not part of the mixer's math)
    attn_drop        only 0 (linear mixers have no attention matrix to drop)
    norm_layer       used by timm only with qk_norm / scale_norm, so ignored
    attn_mask        only None; is_causal=True only for a mixer built with causal=True

Class token. With `causal=False` (the default here, and what vision wants) a linear mixer
scans forwards and over the reversed sequence and sums both; the reversed scan reads the
class token (in front of the patches) last, so it sees every patch. With `causal=True` the
class token would see only itself: use average pooling (`class_token=False,
global_pool="avg"`), which is also what the registered mixzoo ViTs do by default.

Mixed precision: under autocast timm's LayerNorm hands the attention an fp32 x.
MIXZOO_VISION_CAST (read at every call) says where it is cast: "once" (default) casts x to
the autocast dtype once on entry, so the input gradients of all projections are summed in
that dtype (bf16) before one cast back, as timm's own Attention (one qkv projection) does;
"autocast" leaves it to autocast, so every projection of the mixer (DeltaNet: q|k|v and
beta; GLA: q, k, v, gates) casts x on its own and the backward casts each input gradient
back to fp32 and sums them in fp32. The forward values are the same; "once" is one cast
kernel instead of several.

Eager fast paths, MIXZOO_VISION_PATH (read at every call): "layer" (default) runs a
bidirectional DeltaNet layer without output gate (in_proj, conv, delta rule, norm, o_proj;
x cast once to the autocast dtype inside) as ONE autograd.Function; "fused" runs only its
conv, delta rule and output norm through one autograd.Function (the projections and the
output gate stay torch ops; "layer" takes this path for DeltaNets with an output gate);
"mixer" always calls the mixer's own forward (three custom ops per layer). Same kernels and
values, far less host time per layer (see `fast_deltanet.py`). Other mixers, and
torch.compile, always take the mixer's forward.
Defaults from H100 runs in one process (bf16 autocast, DeltaNet ViT-S training step):
call 15: fused + cast-once 48.0 ms at 224 px (batch 128) and 54.1 ms at 1024 px (batch 8)
against the mixer path with autocast casts 51.4 / 65.6 ms; call 17: layer 48.9 / 60.8 ms
against fused + cast-once 49.8 / 66.8 ms (host work at 224 px batch 8, 10th percentile:
34.7 against 36.7 ms; timm 18.0). The bf16 GPU test of the variants against the mixer path
passed in call 13 (fused) and call 17 (`-k variants_match`: 1 passed; layer included).
Older paths: MIXZOO_VISION_PATH=fused (call 15's default), and MIXZOO_VISION_PATH=mixer
MIXZOO_VISION_CAST=autocast (before).

Scan order: `scan="row" | "row_rev" | "col" | "col_rev"` (see `scan.py`). Column orders need
the patch grid and the number of prefix tokens: pass them to `timm_attn`, or call
`bind_layout(model)` after building (registered models, `swap_mixers` and recipes do).
"""
from __future__ import annotations

import os
from typing import Any, ClassVar

import torch
from torch import nn

from mixzoo.mixers.base import MixerConfig
from mixzoo.registry import build_mixer
from mixzoo.registry.core import build_config

from .projections import add_biases
from .scan import check_order, needs_grid, permute, unpermute


CAST_ENV = "MIXZOO_VISION_CAST"
CAST_MODES = ("autocast", "once")
PATH_ENV = "MIXZOO_VISION_PATH"
PATHS = ("mixer", "fused", "layer")


def path_mode() -> str:
    """MIXZOO_VISION_PATH: "layer" (default), "fused" or "mixer" (module docstring)."""
    mode = os.environ.get(PATH_ENV, "layer")
    if mode not in PATHS:
        raise ValueError(f"{PATH_ENV}={mode!r}: expected one of {list(PATHS)}")
    return mode


def cast_mode() -> str:
    """MIXZOO_VISION_CAST: "once" (default) or "autocast" (see the module docstring)."""
    mode = os.environ.get(CAST_ENV, "once")
    if mode not in CAST_MODES:
        raise ValueError(f"{CAST_ENV}={mode!r}: expected one of {list(CAST_MODES)}")
    return mode


def _reject(cls_name: str, arg: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{cls_name}: timm argument {arg}={value!r} cannot be honoured by a "
                      f"mixzoo mixer ({allowed})")


def mixer_config_for(base: MixerConfig, num_heads: int | None) -> MixerConfig:
    """`base` with timm's num_heads applied, unless the spec set num_heads explicitly."""
    if (num_heads is None or "num_heads" not in type(base).model_fields
            or "num_heads" in base.model_fields_set):
        return base
    explicit = {k: getattr(base, k) for k in base.model_fields_set}
    return type(base).model_validate({**explicit, "type": base.type, "num_heads": num_heads})


class MixerAttention(nn.Module):
    """timm `Attention` drop-in around one mixzoo mixer; built by `timm_attn(spec, ...)`."""

    # Bound per subclass by `timm_attn` (timm needs a class, not a partial).
    mixer_spec: ClassVar[MixerConfig | None] = None
    scan_order: ClassVar[str] = "row"
    default_num_prefix_tokens: ClassVar[int | None] = None
    default_grid_size: ClassVar[tuple[int, int] | None] = None

    def __init__(self, dim: int, num_heads: int = 8, attn_head_dim: int | None = None,
                 dim_out: int | None = None, qkv_bias: bool = False, qk_norm: bool = False,
                 scale_norm: bool = False, proj_bias: bool = True, gated: bool = False,
                 attn_drop: float = 0.0, proj_drop: float = 0.0,
                 norm_layer: type[nn.Module] | None = None, device=None, dtype=None,
                 *, layer_idx: int = 0):
        super().__init__()
        name = type(self).__name__
        if self.mixer_spec is None:
            raise TypeError(f"{name} is the unbound base class; build a layer class with "
                            f"mixzoo.timm_attn('<mixer>')")
        if dim_out is not None and dim_out != dim:
            raise _reject(name, "dim_out", dim_out, "a mixer maps D -> D, so dim_out = dim")
        if attn_head_dim is not None and attn_head_dim * num_heads != dim:
            raise _reject(name, "attn_head_dim", attn_head_dim,
                          f"mixer head widths derive from dim={dim} and num_heads={num_heads}")
        for arg, value in (("qk_norm", qk_norm), ("scale_norm", scale_norm), ("gated", gated)):
            if value:
                raise _reject(name, arg, value, "only False is supported")
        if attn_drop:
            raise _reject(name, "attn_drop", attn_drop,
                          "a linear mixer has no attention matrix to drop; use proj_drop")
        del norm_layer                # only used by timm together with qk_norm / scale_norm
        self.config = mixer_config_for(self.mixer_spec, num_heads)
        self.mixer = build_mixer(self.config, dim, layer_idx)
        add_biases(self.mixer, qkv=qkv_bias, proj=proj_bias)
        self.qkv_bias, self.proj_bias = qkv_bias, proj_bias
        self.proj_drop = nn.Dropout(proj_drop)
        self.dim, self.layer_idx = dim, layer_idx
        self.num_heads = getattr(self.config, "num_heads", num_heads)
        self.num_prefix_tokens = self.default_num_prefix_tokens
        self.grid_size = self.default_grid_size
        self._fused_ok: bool | None = None     # MIXZOO_VISION_PATH=fused applies (cached)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    @property
    def causal(self) -> bool:
        return self.config.causal

    @torch.no_grad()
    def init_weights(self) -> None:
        """Restore the mixer's own initialisation.

        timm's ViT init (`init_weights_vit_timm/jax`) re-initialises every nn.Linear, then
        calls `init_weights()` on non-Linear modules, children first. The mixer's init is part
        of its definition (gate biases, decays, ...), so we rebuild a fresh mixer and copy its
        parameters; the biases added for timm's qkv_bias/proj_bias start at zero."""
        ref = build_mixer(self.config, self.dim, self.layer_idx)
        p = next(self.mixer.parameters(), None)
        if p is not None:
            ref.to(device=p.device, dtype=p.dtype)
        missing, _ = self.mixer.load_state_dict(ref.state_dict(), strict=False)
        for key in missing:                    # only the biases added by add_biases
            self.mixer.get_parameter(key).zero_()

    def reset_parameters(self) -> None:        # timm's weight_init="reset" path
        self.init_weights()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None:
            raise ValueError(f"{type(self).__name__}: attn_mask is not supported by mixzoo "
                             f"mixers (pass attn_mask=None)")
        if is_causal and not self.config.causal:
            raise ValueError(f"{type(self).__name__}: is_causal=True but the mixer was built "
                             f"with causal=False; use timm_attn(..., causal=True)")
        order, prefix = self.scan_order, self.num_prefix_tokens
        if order != "row" and prefix is None:
            raise ValueError(f"{type(self).__name__}: scan order {order!r} needs the number "
                             f"of prefix tokens; call mixzoo.models.vision.bind_layout(model) "
                             f"or pass num_prefix_tokens to timm_attn")
        fast, path = None, "mixer"
        if not torch.compiler.is_compiling():         # compiled: the mixer's custom ops
            path = path_mode()
        if path != "mixer":
            fd = _fast_module()
            if getattr(self, "_fused_ok", None) is None:   # fixed by the mixer: once
                self._fused_ok = fd.fused_mixer(self.mixer)
            if self._fused_ok:
                fast = fd
        if path == "layer" and fast is not None and fast.layer_applies(self.mixer, x, True):
            # one autograd node for the whole layer, x cast inside (cast-once semantics)
            h = permute(x, order, self.grid_size, prefix or 0)      # [B,N,D] scan order
            y = fast.layer_forward(self.mixer, h)                     # [B,N,D]
        else:
            dev = x.device.type
            if (x.dtype == torch.float32 and torch.is_autocast_enabled(dev)
                    and cast_mode() == "once"):
                x = x.to(torch.get_autocast_dtype(dev))              # [B,N,D] bf16, one cast
            h = permute(x, order, self.grid_size, prefix or 0)      # [B,N,D] scan order
            if fast is not None and fast.fused_applies(self.mixer, h, True):
                y = fast.fused_forward(self.mixer, h)                 # [B,N,D]
            else:
                y, _ = self.mixer(h)                                  # [B,N,D]
        y = unpermute(y, order, self.grid_size, prefix or 0)        # [B,N,D] timm order
        return self.proj_drop(y) if self.proj_drop.p else y           # p=0: skip the call

    def extra_repr(self) -> str:
        return (f"scan={self.scan_order!r}, qkv_bias={self.qkv_bias}, "
                f"proj_bias={self.proj_bias}")

    def __reduce_ex__(self, protocol):
        """Pickle support (torch.save(model)): the class is made by `timm_attn`, so pickle
        stores the factory's arguments and rebuilds the same class when loading."""
        spec = self.mixer_spec
        args = ({k: getattr(spec, k) for k in spec.model_fields_set} | {"type": spec.type},
                spec.causal, self.scan_order, self.default_num_prefix_tokens,
                self.default_grid_size)
        return (_unpickle, args, self.__dict__)


_FAST: list = []


def _fast_module():
    """fast_deltanet, imported on first use (it imports the Triton launchers)."""
    if not _FAST:
        from . import fast_deltanet
        _FAST.append(fast_deltanet)
    return _FAST[0]


def _unpickle(spec: dict, causal: bool, scan: str, num_prefix_tokens, grid_size):
    cls = timm_attn(spec, causal=causal, scan=scan, num_prefix_tokens=num_prefix_tokens,
                    grid_size=grid_size)
    return cls.__new__(cls)


_CLASSES: dict[tuple, type[MixerAttention]] = {}


def timm_attn(spec: Any, *, causal: bool = False, scan: str = "row",
              num_prefix_tokens: int | None = None,
              grid_size: tuple[int, int] | None = None) -> type[MixerAttention]:
    """A `MixerAttention` subclass for `spec`, usable as timm's `attn_layer=`.

    spec: a registered mixer name, a dict with `type` (plus config fields), or a Config.
    causal: False (default) = bidirectional mixing, what an image wants. It overrides the
        spec's `causal` unless the spec set it explicitly to something else (then raises).
    scan: "row" | "row_rev" | "col" | "col_rev", the order the mixer reads the patches.
    num_prefix_tokens, grid_size: the token layout, needed by column orders (or bind it
        later with `bind_layout(model)`).
    The same arguments return the same class."""
    cfg = build_config(spec)
    if "causal" in cfg.model_fields_set and cfg.causal != causal:
        raise ValueError(f"timm_attn: the spec sets causal={cfg.causal} but the factory was "
                         f"called with causal={causal}; set it in one place")
    if "causal" not in cfg.model_fields_set or cfg.causal != causal:
        data = {k: v for k, v in cfg.model_dump().items() if k in cfg.model_fields_set}
        cfg = type(cfg).model_validate({**data, "type": cfg.type, "causal": causal})
    check_order(scan)
    if grid_size is not None:
        grid_size = (int(grid_size[0]), int(grid_size[1]))
    key = (cfg.model_dump_json(), tuple(sorted(cfg.model_fields_set)), scan,
           num_prefix_tokens, grid_size)
    cls = _CLASSES.get(key)
    if cls is None:
        name = f"MixerAttention_{cfg.type}"
        cls = type(name, (MixerAttention,), {
            "mixer_spec": cfg, "scan_order": scan, "__module__": __name__,
            "default_num_prefix_tokens": num_prefix_tokens, "default_grid_size": grid_size,
            "__doc__": f"timm attention layer running the mixzoo {cfg.type!r} mixer "
                       f"({'causal' if causal else 'bidirectional'}, scan {scan!r})."})
        _CLASSES[key] = cls
    return cls


def bind_layout(model: nn.Module) -> nn.Module:
    """Tell every MixerAttention in a timm ViT its token layout (prefix tokens, patch grid).

    Needed only for column scan orders; reads `model.num_prefix_tokens` and
    `model.patch_embed.grid_size`. Returns the model."""
    prefix = getattr(model, "num_prefix_tokens", None)
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    for m in model.modules():
        if isinstance(m, MixerAttention):
            if prefix is not None:
                m.num_prefix_tokens = int(prefix)
            if grid is not None:
                m.grid_size = (int(grid[0]), int(grid[1]))
            if needs_grid(m.scan_order) and m.num_prefix_tokens is None:
                raise ValueError(f"bind_layout: {type(model).__name__} has no "
                                 f"num_prefix_tokens; pass num_prefix_tokens to timm_attn")
    return model

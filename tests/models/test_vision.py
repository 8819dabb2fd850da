"""mixzoo mixers inside timm models: adapter, swap_mixers, registered models, recipes, scans.

Tiny shapes throughout (32 px images, 8 px patches = 16 patch tokens, widths 32-48, depth
2-4) so the whole file stays fast on a CPU with the reference backends.
"""
import io
import subprocess
import sys
import textwrap

import pytest
import torch

import mixzoo
from mixzoo.kernels._common import assert_close
from mixzoo.models.vision import MixerAttention, bind_layout, import_timm, swap_mixers, timm_attn
from mixzoo.models.vision.mixzoo_vit import MODEL_NAMES
from mixzoo.models.vision.scan import SCAN_ORDERS, permute, unpermute

timm = import_timm()
TINY = dict(img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2)
LINEAR = ["deltanet", "gla", "retnet"]


def images(b=2, seed=0):
    return torch.randn(b, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def tiny_vit(**kw):
    args = dict(TINY, num_classes=5)
    args.update(kw)
    return timm.create_model("vit_tiny_patch16_224", **args)


# -- import cost and registration ---------------------------------------------------------

def test_import_mixzoo_is_lazy_and_registers_on_timm_import():
    code = textwrap.dedent("""
        import sys
        import mixzoo
        assert "timm" not in sys.modules and "torchvision" not in sys.modules
        assert callable(mixzoo.timm_attn) and callable(mixzoo.swap_mixers)
        assert "timm" not in sys.modules
        import timm                      # the hook applies the torchvision workaround
        print(sorted(timm.list_models("mixzoo_*")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert eval(out.stdout.strip()) == sorted(MODEL_NAMES)


def test_torchvision_workaround_only_catches_the_nms_error(monkeypatch):
    from mixzoo.models.vision import _timm
    import builtins
    real_import = builtins.__import__

    def broken(name, *a, **k):
        if name == "torchvision":
            raise RuntimeError("some other torchvision failure")
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(RuntimeError, match="some other torchvision failure"):
        _timm.ensure_torchvision_importable()


# -- registered models --------------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_registered_model_forward_backward(name):
    assert name in timm.list_models("mixzoo_*")
    model = timm.create_model(name, num_classes=5, **TINY)
    assert model.pretrained_cfg["architecture"] == name
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)
    assert {"pos_embed", "cls_token"} <= model.no_weight_decay()
    assert all(isinstance(b.attn, MixerAttention) for b in model.blocks)
    assert model.cls_token is None and model.global_pool == "avg"   # avg pool by default
    x = images()
    y = model(x)
    assert y.shape == (2, 5) and torch.isfinite(y).all()
    feats = model.forward_features(x)
    assert feats.shape == (2, 16, 32)
    assert torch.allclose(model.forward_head(feats), y, atol=1e-6)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 32)
    y.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_residual_stream_is_contiguous_without_a_class_token():
    """The patch embedding's transposed view is made contiguous (ContiguousPatchEmbed), so no
    block sees a strided residual stream (it made every cast and add of a step run PyTorch's
    strided kernels on the GPU); the state_dict keys stay timm's."""
    model = timm.create_model("mixzoo_deltanet_vit_small_patch16_224", num_classes=5, **TINY)
    seen = []
    for block in model.blocks:
        block.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous()))
    model(images())
    assert seen and all(seen), seen
    plain = timm.create_model("vit_small_patch16_224", num_classes=5, class_token=False,
                              global_pool="avg", **TINY)
    assert set(model.patch_embed.state_dict()) == set(plain.patch_embed.state_dict())


def test_registered_hybrid_alternates_mixers_and_follows_depth():
    model = timm.create_model("mixzoo_deltanet_swa_vit_small_patch16_224", **dict(TINY, depth=3))
    types = [b.attn.mixer.config.type for b in model.blocks]
    assert types == ["deltanet", "sliding_window", "deltanet"]
    assert all(not b.attn.causal for b in model.blocks)
    assert model.blocks[0].attn.num_heads == 2                # timm's num_heads reached it


def test_features_only_with_out_indices():
    model = timm.create_model("mixzoo_deltanet_vit_tiny_patch16_224", features_only=True,
                              out_indices=(0, 2), **dict(TINY, depth=3))
    feats = model(images())
    assert [tuple(f.shape) for f in feats] == [(2, 32, 4, 4), (2, 32, 4, 4)]
    assert model.feature_info.channels() == [32, 32]
    assert model.feature_info.reduction() == [8, 8]


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = timm.create_model("mixzoo_gla_vit_small_patch16_224", **TINY).train()
    x = images()
    model(x).sum().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    assert model.grad_checkpointing
    model(x).sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], rtol=1e-4, atol=1e-6, msg=n)


def test_class_token_option_sees_every_patch():
    """class_token=True + token pooling: the reversed scan shows the class token all patches."""
    model = timm.create_model("mixzoo_deltanet_vit_tiny_patch16_224", class_token=True,
                              global_pool="token", **TINY).eval()
    assert model.blocks[0].attn.num_prefix_tokens == 1
    x = images(1)
    x2 = x.clone()
    x2[..., 24:, 24:] += 1.0                         # only the last (bottom-right) patch
    assert not torch.allclose(model(x), model(x2), atol=1e-5)


# -- the attn_layer factory -----------------------------------------------------------------

def test_timm_attn_as_attn_layer_in_a_plain_vit():
    Attn = mixzoo.timm_attn("gla", causal=False)
    assert isinstance(Attn, type) and issubclass(Attn, MixerAttention)
    assert mixzoo.timm_attn("gla", causal=False) is Attn         # cached: same class
    vit = tiny_vit(attn_layer=Attn)                             # timm default: qkv_bias=True
    attn = vit.blocks[0].attn
    assert isinstance(attn, Attn) and attn.mixer.config.num_heads == 2
    assert attn.mixer.q_proj.bias is not None and attn.mixer.o_proj.bias is not None
    y = vit(images())
    assert y.shape == (2, 5) and torch.isfinite(y).all()
    y.sum().backward()
    assert attn.mixer.q_proj.weight.grad is not None


def test_timm_attn_keeps_an_explicit_head_count_and_validates_the_spec():
    Attn = timm_attn({"type": "deltanet", "num_heads": 1})
    assert Attn(32, num_heads=2).mixer.config.num_heads == 1
    with pytest.raises(ValueError, match="causal"):
        timm_attn({"type": "deltanet", "causal": True}, causal=False)
    with pytest.raises(KeyError, match="deltanet"):
        timm_attn("deltanett")
    with pytest.raises(ValueError, match="scan order"):
        timm_attn("deltanet", scan="diagonal")


@pytest.mark.parametrize("kwargs, match", [
    (dict(qk_norm=True, norm_layer=torch.nn.LayerNorm), "qk_norm"),
    (dict(scale_norm=True, norm_layer=torch.nn.LayerNorm), "scale_norm"),
    (dict(attn_drop=0.1), "attn_drop"),
    (dict(dim_out=16), "dim_out"),
    (dict(gated=True), "gated"),
    (dict(attn_head_dim=8), "attn_head_dim"),
])
def test_adapter_rejects_what_it_cannot_honour(kwargs, match):
    with pytest.raises(ValueError, match=match):
        timm_attn("deltanet")(32, num_heads=2, **kwargs)


def test_adapter_forward_arguments():
    attn = timm_attn("retnet")(32, num_heads=2)
    x = torch.randn(1, 5, 32)
    assert attn(x, attn_mask=None, is_causal=False).shape == (1, 5, 32)
    with pytest.raises(ValueError, match="attn_mask"):
        attn(x, attn_mask=torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="is_causal"):
        attn(x, is_causal=True)
    causal = timm_attn("retnet", causal=True)(32, num_heads=2)
    assert causal(x, is_causal=True).shape == (1, 5, 32)
    with pytest.raises(TypeError):
        timm_attn("retnet")(32, num_heads=2, qkv_bais=True)       # typo: no sponge
    with pytest.raises(ValueError, match="projection map"):
        timm_attn("short_conv")(32, num_heads=2, qkv_bias=True)
    assert timm_attn("short_conv")(32, num_heads=2, proj_bias=False)(x).shape == (1, 5, 32)


def test_adapter_keeps_the_mixers_own_init_after_timm_init():
    torch.manual_seed(0)
    vit = tiny_vit(attn_layer=timm_attn("gla"))
    gate_bias = vit.blocks[0].attn.mixer.gk_proj[1].bias
    assert gate_bias.abs().sum() > 0     # timm zeroes Linear biases; the mixer's init is back
    assert vit.blocks[0].attn.mixer.q_proj.bias.abs().sum() == 0      # added bias starts at 0


@pytest.mark.parametrize("mixer", ["deltanet", "gla"])
def test_cast_once_under_autocast_same_forward_fewer_casts(mixer, monkeypatch):
    """MIXZOO_VISION_CAST=once: the forward is bit-identical to the per-projection autocast
    casts, the gradients agree to bf16 rounding, and the fp32 input is cast only once."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountCasts(TorchDispatchMode):       # fp32 -> bf16 casts of the [B,N,D] input
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if (func is torch.ops.aten._to_copy.default and args[0].dtype == torch.float32
                    and kwargs.get("dtype") == torch.bfloat16 and args[0].shape == (2, 9, 32)):
                CountCasts.n += 1
            return func(*args, **kwargs)

    torch.manual_seed(0)
    attn = timm_attn({"type": mixer, "backend": "reference"})(32, num_heads=2, qkv_bias=False)
    x = torch.randn(2, 9, 32)
    outs, casts = [], []
    for mode in ("autocast", "once"):
        monkeypatch.setenv("MIXZOO_VISION_CAST", mode)
        xx = x.clone().requires_grad_()
        CountCasts.n = 0
        with CountCasts(), torch.autocast("cpu", dtype=torch.bfloat16):
            y = attn(xx * 1.0)     # not a leaf: autocast caches the casts of leaves only
        casts.append(CountCasts.n)
        (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append((y.detach(), xx.grad))
    assert casts[0] >= 2 and casts[1] == 1
    assert torch.equal(outs[0][0], outs[1][0])
    assert_close(outs[0][1], outs[1][1], 2e-2, "dx")
    monkeypatch.setenv("MIXZOO_VISION_CAST", "twice")
    with pytest.raises(ValueError, match="MIXZOO_VISION_CAST"), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x)


# -- bidirectionality and scan orders ----------------------------------------------------------

def _dependence(attn, src, dst, n=16, prefix=0):
    """|d out[dst] / d in[src]| for one adapter on a [1, prefix + n, D] input."""
    x = torch.randn(1, prefix + n, attn.dim, requires_grad=True)
    attn(x)[0, dst].sum().backward()
    return x.grad[0, src].abs().sum().item()


@pytest.mark.parametrize("mixer", LINEAR + ["short_conv"])
def test_bidirectional_first_patch_depends_on_last(mixer):
    torch.manual_seed(0)
    src = 1 if mixer == "short_conv" else 15       # a conv only reaches its neighbours
    bi = timm_attn(mixer, causal=False)(32, num_heads=2, qkv_bias=False, proj_bias=False)
    assert _dependence(bi, src=src, dst=0) > 0
    causal = timm_attn(mixer, causal=True)(32, num_heads=2, qkv_bias=False, proj_bias=False)
    assert _dependence(causal, src=src, dst=0) == 0


@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("d_model,heads,conv,bias", [(32, 2, True, True), (24, 3, True, False),
                                                     (32, 2, False, False)])
def test_deltanet_bidirectional_fast_path_equals_two_scan_definition(backend, d_model, heads,
                                                                      conv, bias):
    """DeltaNet's vision path (one doubled-batch conv writing q|k|v, the directions combined
    inside the fused output norm) == o_norm(bidirectional(run, h)) over the causal scan:
    output and every input/parameter grad.
    d_model 24 / 3 heads: q|k|v groups too narrow for the grouped kernel (split fallback);
    bias: in_proj with a bias (timm's qkv_bias=True), which the fast path slices too."""
    from mixzoo.mixers.base import bidirectional
    from mixzoo.registry import build_mixer
    torch.manual_seed(0)
    m = build_mixer({"type": "deltanet", "num_heads": heads, "causal": False,
                     "backend": backend, "use_short_conv": conv}, d_model)
    if bias:
        m.in_proj.bias = torch.nn.Parameter(torch.randn(m.in_proj.out_features))
    x = torch.randn(2, 11, d_model)
    dy = torch.randn(2, 11, heads, d_model // heads)
    params = [p for p in m.parameters() if p.requires_grad]
    outs = []
    for fn in (m._bidirectional_scan,
               lambda xx: m.o_norm(bidirectional(lambda hh: m._scan(hh, None, False)[0],
                                                 m.in_proj(xx)))):
        xx = x.clone().requires_grad_()
        o = fn(xx)
        grads = torch.autograd.grad((o * dy).sum(), [xx] + params, allow_unused=True)
        outs.append([o.detach()] + [g for g in grads if g is not None])
    assert len(outs[0]) == len(outs[1])
    for i, (a, b) in enumerate(zip(*outs)):
        assert_close(b, a, 1e-5, f"item {i}")


@pytest.mark.parametrize("path,extras", [("fused", True), ("layer", True), ("layer", False)])
def test_fast_vision_paths_equal_the_mixer(path, extras, monkeypatch):
    """MIXZOO_VISION_PATH=fused (conv, delta rule and norm in one autograd.Function) and
    =layer (the whole layer, projections included, as one autograd node) against the mixer's
    own path on the same Triton kernels (interpreter, fp32) and against the plain-PyTorch
    reference backend: output and every input/parameter grad, plain and with in_proj/o_proj
    biases and beta in (0,2) (plus an output gate, which sends "layer" to the fused path);
    T=11 and T=70 are not multiples of the chunk (70: the reversed direction's beta crosses a
    chunk boundary)."""
    torch.manual_seed(0)
    spec = {"type": "deltanet", "backend": "triton", "use_output_gate": extras and path == "fused",
            "allow_neg_eigval": extras}
    attn = timm_attn(spec)(32, num_heads=2, qkv_bias=extras, proj_bias=extras)
    if extras:
        with torch.no_grad():
            attn.mixer.in_proj.bias.normal_()
            attn.mixer.o_proj.bias.normal_()
    T = 11 if path != "layer" or extras else 70     # 70: two chunks, the second a 6-row tail
    x = torch.randn(2, T, 32)
    dy = torch.randn(2, T, 32)
    params = list(attn.parameters())
    outs, nodes = [], []
    for p, backend in (("mixer", "triton"), (path, "triton"), ("mixer", "reference")):
        monkeypatch.setenv("MIXZOO_VISION_PATH", p)
        monkeypatch.setenv("MIXZOO_BACKEND", backend)
        xx = x.clone().requires_grad_()
        y = attn(xx)
        nodes.append(type(y.grad_fn).__name__)
        outs.append([y.detach()] + list(torch.autograd.grad((y * dy).sum(), [xx] + params)))
    monkeypatch.delenv("MIXZOO_BACKEND")
    for i, (a, b, ref) in enumerate(zip(*outs)):
        assert_close(a, b, 1e-6, f"item {i} vs the mixer")
        assert_close(ref, b, 1e-5, f"item {i} vs the reference")
    if path == "layer":
        assert nodes[1] == "_BidirLayerBackward"           # one autograd node per layer
        monkeypatch.setenv("MIXZOO_VISION_PATH", "layer")
        with torch.no_grad():                              # inference: nothing saved
            assert torch.equal(attn(x), outs[1][0])
    from mixzoo.models.vision.fast_deltanet import fused_applies, layer_applies
    assert fused_applies(attn.mixer, x)
    assert layer_applies(attn.mixer, x) == (not spec["use_output_gate"])
    assert not fused_applies(attn.mixer, x[:, :1])      # T == 1: delta_rule's recurrent path
    causal = timm_attn({"type": "deltanet", "backend": "triton"}, causal=True)(32, num_heads=2)
    assert not fused_applies(causal.mixer, torch.randn(2, 5, 32))    # causal: the mixer's
    monkeypatch.setenv("MIXZOO_VISION_PATH", "fast")
    with pytest.raises(ValueError, match="MIXZOO_VISION_PATH"):
        attn(x)


def test_layer_path_under_autocast_casts_once_and_returns_param_dtypes(monkeypatch):
    """MIXZOO_VISION_PATH=layer under autocast: output in the autocast dtype, every gradient
    in its input's dtype (fp32 params and input), and exactly one fp32 -> bf16 cast of x.
    (Values need bf16 Triton math, which the interpreter gets wrong: GPU test.)"""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountCasts(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if (func is torch.ops.aten._to_copy.default and args[0].shape == (2, 9, 32)
                    and kwargs.get("dtype") == torch.bfloat16):
                CountCasts.n += 1
            return func(*args, **kwargs)

    monkeypatch.setenv("MIXZOO_VISION_PATH", "layer")
    attn = timm_attn({"type": "deltanet", "backend": "triton"})(32, num_heads=2)
    xx = torch.randn(2, 9, 32, requires_grad=True)
    with CountCasts(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = attn(xx * 1.0)
    assert CountCasts.n == 1 and y.dtype == torch.bfloat16
    params = list(attn.parameters())
    grads = torch.autograd.grad(y.float().sum(), [xx] + params)
    assert [g.dtype for g in grads] == [torch.float32] * len(grads)
    assert [g.shape for g in grads] == [xx.shape] + [p.shape for p in params]


def test_combine_directions_forward_and_backward():
    from mixzoo.mixers.base import combine_directions
    both = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(combine_directions, (both,))
    want = both[:2] + both[2:].flip(1)
    torch.testing.assert_close(combine_directions(both), want)


def test_scan_permutation_round_trip_and_prefix_tokens():
    x = torch.randn(2, 1 + 12, 3)
    for order in SCAN_ORDERS:
        p = permute(x, order, (3, 4), 1)
        assert torch.equal(p[:, 0], x[:, 0])                   # class token stays in front
        assert torch.equal(unpermute(p, order, (3, 4), 1), x)
    ids = torch.arange(6.0).reshape(1, 6, 1)                  # a 2x3 grid, row-major ids
    assert permute(ids, "col", (2, 3), 0).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert permute(ids, "col_rev", (2, 3), 0).flatten().tolist() == [5, 2, 4, 1, 3, 0]
    assert permute(ids, "row_rev", None, 0).flatten().tolist() == [5, 4, 3, 2, 1, 0]


def test_column_scan_changes_what_a_causal_mixer_sees():
    """4x4 grid: in column-major order patch (3,0) comes before (0,1); in row-major after."""
    torch.manual_seed(0)
    dst, src = 1, 12                                           # (0,1) and (3,0), row-major ids
    row = timm_attn("deltanet", causal=True, scan="row", num_prefix_tokens=0,
                    grid_size=(4, 4))(32, num_heads=2)
    col = timm_attn("deltanet", causal=True, scan="col", num_prefix_tokens=0,
                    grid_size=(4, 4))(32, num_heads=2)
    col.load_state_dict(row.state_dict())
    assert _dependence(row, src, dst) == 0
    assert _dependence(col, src, dst) > 0
    assert _dependence(col, src=5, dst=dst) == 0                # (1,1) comes after (0,1)


def test_column_scan_needs_a_bound_layout():
    attn = timm_attn("gla", scan="col")(32, num_heads=2)
    with pytest.raises(ValueError, match="bind_layout"):
        attn(torch.randn(1, 17, 32))
    vit = tiny_vit(attn_layer=timm_attn("gla", scan="col"))
    bind_layout(vit)
    assert vit.blocks[0].attn.num_prefix_tokens == 1 and vit.blocks[0].attn.grid_size == (4, 4)
    assert vit(images()).shape == (2, 5)


# -- swap_mixers ---------------------------------------------------------------------------

def test_swap_with_attention_init_reproduces_the_vit():
    """mixzoo's softmax attention initialised from timm's qkv/proj is the same function."""
    vit = tiny_vit(embed_dim=48, num_heads=3, depth=3).eval()
    x = images()
    ref = vit(x)
    swap_mixers(vit, {"type": "attention", "rotary": False}, init_from_attention=True)
    torch.testing.assert_close(vit(x), ref, rtol=1e-4, atol=1e-5)


def test_swap_deltanet_into_vit_tiny_with_weight_init_and_state_dict_reload():
    def build():
        torch.manual_seed(0)
        vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4,
                                num_classes=5)
        qkv = vit.blocks[0].attn.qkv.weight.detach().clone()
        swap_mixers(vit, "deltanet", layers="all", init_from_attention=True)
        return vit, qkv

    vit, qkv = build()
    mixer = vit.blocks[0].attn.mixer
    D = 192
    torch.testing.assert_close(mixer.in_proj.weight[:3 * D], qkv)     # q|k|v rows copied
    assert mixer.in_proj.bias is not None                        # timm's qkv_bias carried over
    assert mixer.config.num_heads == 3 and not mixer.config.causal
    names = sorted(n for n, _ in vit.named_parameters() if n.startswith("blocks.0.attn"))
    assert names == sorted(f"blocks.0.attn.mixer.{n}" for n in (
        "in_proj.weight", "in_proj.bias", "conv_weight", "o_norm.weight", "o_proj.weight",
        "o_proj.bias"))
    x = images()
    vit.train()
    y = vit(x)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(mixer.in_proj.weight.grad).all()
    assert mixer.in_proj.weight.shape[1] == D
    buf = io.BytesIO()
    torch.save(vit.state_dict(), buf)
    fresh, _ = build()
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))                       # strict: same names
    vit.eval()
    fresh.eval()
    torch.testing.assert_close(fresh(x), vit(x))


def test_swap_layer_selection_hybrids_and_errors():
    vit = tiny_vit(depth=4)
    swap_mixers(vit, ["deltanet", "gla"], layers=[0, -1])
    kinds = [type(b.attn).__name__ for b in vit.blocks]
    assert kinds == ["MixerAttention_deltanet", "Attention", "Attention", "MixerAttention_gla"]
    swap_mixers(vit, "retnet", layers="blocks.[12].attn", scan=["row", "col"])
    assert [b.attn.mixer.config.type for b in vit.blocks[1:3]] == ["retnet", "retnet"]
    assert [b.attn.scan_order for b in vit.blocks[1:3]] == ["row", "col"]
    swap_mixers(vit, "gla", layers=[0])                          # re-swap a mixer slot
    assert vit.blocks[0].attn.mixer.config.type == "gla"
    assert vit(images()).shape == (2, 5)
    with pytest.raises(IndexError):
        swap_mixers(vit, "gla", layers=[4])
    with pytest.raises(ValueError, match="matches no attention layer"):
        swap_mixers(vit, "gla", layers="head*")
    with pytest.raises(ValueError, match="2 mixer specs for 4"):
        swap_mixers(vit, ["gla", "gla"])
    with pytest.raises(ValueError, match="expand_k"):
        swap_mixers(tiny_vit(), "gla", init_from_attention=True)   # GLA keys are D/2 wide


# -- recipes of kind vision -------------------------------------------------------------------

VISION_RECIPE = """
description: tiny DeltaNet/SWA vision hybrid
model:
  kind: vision
  d_model: 32
  presets:
    dn: {type: deltanet, num_heads: 2}
    swa: {type: sliding_window, num_heads: 2, window: 8, rotary: false}
  pattern: [dn, swa]
  repeat: 2
  block: {drop_path: 0.1}
  vision:
    base: vit_tiny_patch16_224
    img_size: 32
    patch_size: 8
    num_classes: 3
    scan: [row, col]
"""


def test_vision_recipe_round_trip(tmp_path):
    from mixzoo.recipes import build_model, load_recipe
    from timm.models.vision_transformer import VisionTransformer
    path = tmp_path / "vit.yaml"
    path.write_text(VISION_RECIPE)
    recipe = load_recipe(path)
    torch.manual_seed(0)
    model = build_model(recipe)
    assert isinstance(model, VisionTransformer)
    assert [b.attn.mixer.config.type for b in model.blocks] == ["deltanet", "sliding_window"] * 2
    assert [b.attn.scan_order for b in model.blocks] == ["row", "col"] * 2
    assert all(not b.attn.causal for b in model.blocks)
    assert model.global_pool == "avg" and model.cls_token is None
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    from timm.layers import LayerNorm, Mlp              # unset block fields: the base's block
    assert isinstance(model.blocks[0].norm1, LayerNorm) and isinstance(model.blocks[0].mlp, Mlp)
    x = images()
    model.eval()
    y = model(x)
    assert y.shape == (2, 3)
    again = load_recipe(recipe.model_dump(mode="json"))
    assert again == recipe and again.model.block.model_fields_set == {"drop_path"}
    torch.manual_seed(0)
    model2 = build_model(again).eval()
    torch.testing.assert_close(model2(x), y)


def test_vision_recipe_block_fields_that_are_set_map_to_timm():
    from mixzoo.recipes import build_model, load_recipe
    from timm.layers import RmsNorm, SwiGLU
    model = build_model(load_recipe({"model": {
        "kind": "vision", "d_model": 32, "layers": [{"type": "gla", "num_heads": 2}],
        "block": {"norm": "rmsnorm", "mlp": "swiglu", "mlp_ratio": 3, "layer_scale": 0.1},
        "vision": {"base": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8}}}))
    blk = model.blocks[0]
    assert isinstance(blk.norm1, RmsNorm) and isinstance(blk.mlp, SwiGLU)
    assert blk.mlp.fc1_g.out_features == 64                    # 2/3 * 3 * 32 per branch
    assert torch.allclose(blk.ls1.gamma, torch.full((32,), 0.1))


def test_vision_spec_validation():
    from pydantic import ValidationError
    from mixzoo.models.vision import VisionSpec
    assert VisionSpec().resolve_pool(["deltanet"]) == ("avg", False)
    assert VisionSpec().resolve_pool(["attention"]) == ("token", True)
    with pytest.raises(ValidationError, match="pretrained"):
        VisionSpec(init_from_attention=True)
    with pytest.raises(ValidationError, match="class token"):
        VisionSpec(pool="token", class_token=False)
    with pytest.raises(ValidationError, match="causal"):
        VisionSpec(pool="token", causal=True)
    with pytest.raises(ValidationError):
        VisionSpec(scan=["zigzag"])
    with pytest.raises(ValidationError):
        VisionSpec(img_sz=32)


def test_whole_model_pickles_and_deepcopies():
    """torch.save(model) / copy.deepcopy (timm's EMA) work with the factory-made classes."""
    import copy
    model = timm.create_model("mixzoo_deltanet_swa_vit_small_patch16_224", scan=["row", "col"],
                              **TINY).eval()
    x = images()
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert type(loaded.blocks[1].attn) is type(model.blocks[1].attn)
    assert loaded.blocks[1].attn.scan_order == "col"
    torch.testing.assert_close(loaded(x), model(x))
    torch.testing.assert_close(copy.deepcopy(model)(x), model(x))


# -- GPU (run on the H100 next to benchmarks/bench_vision.py) ---------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gpu_registered_model_triton_matches_reference(name, monkeypatch):
    """bf16 autocast training step on the Triton kernels vs the fp32 reference backend, at
    the real ViT-S/16 width and 224 px (196 tokens): its error is at most 1.5x that of the
    same bf16 autocast step on the plain-PyTorch reference backend (12 blocks of bf16 put
    the logits 2-4e-2 from fp32 on the H100 whatever the mixer kernels), and below 0.1."""
    from mixzoo.kernels._common import rel_rms
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).cuda().train()
    x = torch.randn(4, 3, 224, 224, device="cuda")

    def step(backend, autocast):
        monkeypatch.setenv("MIXZOO_BACKEND", backend)
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        out.float().square().mean().backward()
        return out.float(), torch.cat([p.grad.float().flatten() for p in model.parameters()])
    ref, ref_g = step("reference", False)                       # fp32 reference
    plain, plain_g = step("reference", True)                    # bf16, plain PyTorch mixers
    out, got = step("triton", True)                             # bf16, our kernels
    for what, r, p, o in (("logits", ref, plain, out), ("grads", ref_g, plain_g, got)):
        err, base = rel_rms(r, o), rel_rms(r, p)
        print(f"{name} {what}: triton bf16 {err:.2e}, plain bf16 {base:.2e}")
        assert err <= 1.5 * base + 5e-3 and err < 0.1, f"{name} {what}: {err:.2e} vs {base:.2e}"


@pytest.mark.gpu
def test_gpu_deltanet_vit_variants_match_the_default(monkeypatch):
    """The speed variants (MIXZOO_VISION_CAST=once, MIXZOO_RMSNORM_DISPATCH=function,
    MIXZOO_VISION_PATH=fused, fused with cast-once, layer) against an fp32 step of the same
    model: one bf16 autocast training step of the DeltaNet ViT-S each, whose logits and
    gradients are at most 1.5x (+5e-3) as far from fp32 as the mixer's own path in bf16 (the
    fast paths compute beta = sigmoid(logit) in fp32 inside the kernels where the mixer
    rounds it to bf16, so they are not bitwise the mixer's; bf16 puts logits 2-4e-2 from fp32
    whatever the kernels, see the test above)."""
    from mixzoo.kernels._common import rel_rms
    torch.manual_seed(0)
    model = timm.create_model("mixzoo_deltanet_vit_small_patch16_224", num_classes=10)
    model = model.cuda().train()
    x = torch.randn(8, 3, 224, 224, device="cuda")
    runs = []
    mixer = {"MIXZOO_VISION_PATH": "mixer", "MIXZOO_VISION_CAST": "autocast",
             "MIXZOO_RMSNORM_DISPATCH": "op"}
    variants = (mixer,
                {"MIXZOO_VISION_CAST": "once", "MIXZOO_RMSNORM_DISPATCH": "function"},
                {"MIXZOO_VISION_CAST": "autocast", "MIXZOO_RMSNORM_DISPATCH": "op",
                 "MIXZOO_VISION_PATH": "fused"},
                {"MIXZOO_VISION_CAST": "once", "MIXZOO_VISION_PATH": "fused"},
                {"MIXZOO_VISION_PATH": "layer"})
    for env, autocast in ((mixer, False),) + tuple((v, True) for v in variants):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        out.float().square().mean().backward()
        runs.append((out.float().detach(),
                     torch.cat([p.grad.float().flatten() for p in model.parameters()])))
    ref, base = runs[0], runs[1]                  # fp32; the mixer's path in bf16
    for i in range(2, len(runs)):
        for j, what in enumerate(("logits", "grads")):
            err, b = rel_rms(ref[j], runs[i][j]), rel_rms(ref[j], base[j])
            print(f"variant {i - 1} {what}: {err:.2e} from fp32 (mixer path bf16 {b:.2e})")
            assert err <= 1.5 * b + 5e-3 and err < 0.1, f"variant {i - 1} {what}"

"""The mixer contract as executable checks, for built-ins and plugin authors alike.

    from mixzoo.testing import check_mixer_contract
    check_mixer_contract("my_mixer")                       # runs every check, raises on failure
    check_mixer_contract({"type": "my_mixer", "num_heads": 2}, d_model=64)

Each check is also a plain function `check_<name>(spec, d_model=32, *, seq_len=17, seed=0,
device="cpu")` (collected in `CONTRACT_CHECKS`), so a test file can parametrise over
`list_mixers()` x `CONTRACT_CHECKS` and every registered mixer, plugins included, is tested
without anyone adding a line. `spec` is what `build_mixer` takes: a registry name, a dict
with `type`, or a Config object. Checks that need a causal (or bidirectional) mixer rebuild
the spec with `causal` overridden.

A mixer class may declare `state_grows_with_seq: bool` (True for a KV cache, False for a
constant-size state); `check_state_size` then also checks that declaration.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from pydantic import ValidationError

from mixzoo.kernels._common import assert_close
from mixzoo.registry import build_mixer, get_mixer
from mixzoo.registry.core import build_config

__all__ = ["CONTRACT_CHECKS", "check_mixer_contract", "build_variant", "state_tensors",
           "check_config", "check_unknown_config_field", "check_output_shape_dtype",
           "check_bad_input", "check_gradients", "check_causality", "check_state_carry",
           "check_bidirectional", "check_state_size"]

# Carried state vs one pass, fp32 math: chunked and step-wise forms differ by rounding only.
STATE_RTOL = 1e-4
# Changing future tokens must leave past outputs untouched up to float noise (masked terms
# are multiplied by exact zeros, so in practice the outputs are bitwise equal).
CAUSAL_ATOL = 1e-6


def build_variant(spec: Any, d_model: int, device: str = "cpu", seed: int = 0,
                  **overrides: Any) -> torch.nn.Module:
    """Build `spec` with some Config fields overridden (re-validated), seeded, on `device`."""
    config = build_config(spec)
    if overrides:
        config = type(config).model_validate({**config.model_dump(), **overrides})
    torch.manual_seed(seed)
    return build_mixer(config, d_model).to(device)


def state_tensors(state: Any, path: str = "state") -> Iterator[tuple[str, Any]]:
    """Flatten a state (tensor / dict / list / tuple / scalar / None) into (path, leaf)."""
    if isinstance(state, dict):
        for k in sorted(state, key=str):
            yield from state_tensors(state[k], f"{path}[{k!r}]")
    elif isinstance(state, (list, tuple)):
        for i, s in enumerate(state):
            yield from state_tensors(s, f"{path}[{i}]")
    else:
        yield path, state


def _numel(state: Any) -> int:
    return sum(t.numel() for _, t in state_tensors(state) if isinstance(t, torch.Tensor))


def _assert_states_close(ref: Any, out: Any, what: str) -> None:
    a, b = list(state_tensors(ref)), list(state_tensors(out))
    assert [p for p, _ in a] == [p for p, _ in b], \
        f"{what}: state structure differs: {[p for p, _ in a]} vs {[p for p, _ in b]}"
    for (p, r), (_, o) in zip(a, b):
        if isinstance(r, torch.Tensor):
            assert isinstance(o, torch.Tensor), f"{what}: {p} is a tensor in one state only"
            assert_close(r.float(), o.float(), STATE_RTOL, name=f"{what}: {p}")
        else:
            assert r == o, f"{what}: {p} differs: {r!r} vs {o!r}"


def _inputs(d_model: int, seq_len: int, seed: int, device: str, batch: int = 2,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randn(batch, seq_len, d_model, generator=g).to(device=device, dtype=dtype)


# -- the checks --------------------------------------------------------------------------
def check_config(spec, d_model=32, *, seq_len=17, seed=0, device="cpu"):
    """The Config holds every default, is frozen, round-trips, and its `type` is the key."""
    config = build_config(spec)
    cls = get_mixer(config.type)
    assert isinstance(config, cls.Config), f"config {type(config)} is not {cls.__name__}.Config"
    defaults = cls.Config()  # every field must have a default
    assert defaults.type == config.type, f"Config().type={defaults.type!r} != {config.type!r}"
    again = cls.Config.model_validate(config.model_dump())
    assert again == config, f"model_dump/model_validate round trip changed the config"
    try:
        config.causal = not config.causal
    except (ValidationError, TypeError, AttributeError):
        pass
    else:
        raise AssertionError(f"{cls.__name__}.Config is not frozen")
    m = build_variant(config, d_model, device, seed)
    assert m.config == config and m.d_model == d_model


def check_unknown_config_field(spec, d_model=32, *, seq_len=17, seed=0, device="cpu"):
    """An unknown field is rejected, naming the field (typos never pass silently)."""
    config = build_config(spec)
    bad = "definitely_not_a_field"
    for build in (lambda: build_mixer({**config.model_dump(), bad: 1}, d_model),
                  lambda: type(config)(**{bad: 1})):
        try:
            build()
        except (ValueError, TypeError) as e:  # pydantic's ValidationError is a ValueError
            assert bad in str(e), f"the error does not name the unknown field {bad!r}: {e}"
        else:
            raise AssertionError(f"unknown config field {bad!r} was accepted")


def check_output_shape_dtype(spec, d_model=32, *, seq_len=17, seed=0, device="cpu"):
    """y has x's shape [B,T,D] and dtype (fp32 and bf16), is finite; T=1 works too."""
    for dtype in (torch.float32, torch.bfloat16):
        for T in (seq_len, 1):
            m = build_variant(spec, d_model, device, seed).to(dtype)
            x = _inputs(d_model, T, seed, device, dtype=dtype)
            with torch.no_grad():
                y, _ = m(x)
            assert isinstance(y, torch.Tensor), f"forward must return (y, state), got {type(y)}"
            assert y.shape == x.shape, f"{dtype}, T={T}: y {tuple(y.shape)} != x {tuple(x.shape)}"
            assert y.dtype == dtype, f"y dtype {y.dtype} != x dtype {dtype}"
            assert torch.isfinite(y).all(), f"{dtype}, T={T}: y has NaN/Inf"


def check_bad_input(spec, d_model=32, *, seq_len=17, seed=0, device="cpu"):
    """Wrong rank or width of x -> ValueError naming the expected shape [B,T,D]."""
    m = build_variant(spec, d_model, device, seed)
    for bad in (torch.randn(seq_len, d_model), torch.randn(2, seq_len, d_model + 1),
                torch.randn(1, 2, seq_len, d_model)):
        try:
            m(bad.to(device))
        except ValueError as e:
            assert "[B,T,D]" in str(e) and str(d_model) in str(e), \
                f"x {tuple(bad.shape)}: the error does not name [B,T,D] with D={d_model}: {e}"
        except Exception as e:
            raise AssertionError(f"x {tuple(bad.shape)}: expected a ValueError naming [B,T,D], "
                                 f"got {type(e).__name__}: {e}") from e
        else:
            raise AssertionError(f"x of shape {tuple(bad.shape)} was accepted")


def check_gradients(spec, d_model=32, *, seq_len=17, seed=0, device="cpu"):
    """Every parameter (and x) gets a finite, nonzero gradient, causal and bidirectional."""
    for causal in (True, False):
        m = build_variant(spec, d_model, device, seed, causal=causal)
        x = _inputs(d_model, seq_len, seed, device).requires_grad_(True)
        y, _ = m(x)
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 2)).to(device)
        (y * w).sum().backward()
        for name, p in [("x", x), *m.named_parameters()]:
            assert p.grad is not None, f"causal={causal}: no gradient reaches {name}"
            assert torch.isfinite(p.grad).all(), f"causal={causal}: NaN/Inf gradient in {name}"
            assert p.grad.abs().sum() > 0, f"causal={causal}: gradient of {name} is all zero"


def check_causality(spec, d_model=32, *, seq_len=17, seed=0, device="cpu"):
    """causal=True: changing tokens >= t0 never changes outputs < t0; earlier tokens matter."""
    m = build_variant(spec, d_model, device, seed, causal=True)
    x = _inputs(d_model, seq_len, seed, device)
    t0 = seq_len // 2 + 1
    x_future = x.clone()
    x_future[:, t0:] = _inputs(d_model, seq_len - t0, seed + 7, device)
    x_past = x.clone()
    x_past[:, t0 - 1] += 1.0
    with torch.no_grad():
        y, y_future, y_past = m(x)[0], m(x_future)[0], m(x_past)[0]
    diff = (y[:, :t0] - y_future[:, :t0]).abs().max().item()
    assert diff <= CAUSAL_ATOL * max(1.0, y.abs().max().item()), \
        f"changing tokens >= {t0} changed outputs before {t0} by {diff:.3e}: not causal"
    assert not torch.allclose(y[:, t0], y_past[:, t0]), \
        f"output {t0} ignores token {t0 - 1}: the mixer does not mix over time"


def check_state_carry(spec, d_model=32, *, seq_len=17, seed=0, device="cpu"):
    """One pass == two halves with the state carried == token by token (outputs and states);
    state=None == init_state()."""
    m = build_variant(spec, d_model, device, seed, causal=True)
    x = _inputs(d_model, seq_len, seed, device)
    B = x.shape[0]
    with torch.no_grad():
        y, s = m(x, m.init_state(B, device, x.dtype))
        y_none, s_none = m(x)
        assert_close(y, y_none, STATE_RTOL, name="state=None vs init_state")
        if s_none is not None:
            _assert_states_close(s, s_none, "state=None vs init_state")
        for cut in sorted({1, seq_len // 2 - 1, seq_len - 1} - {0}):
            y1, s1 = m(x[:, :cut], m.init_state(B, device, x.dtype))
            y2, s2 = m(x[:, cut:], s1)
            assert_close(y, torch.cat([y1, y2], 1), STATE_RTOL, name=f"two pieces (cut {cut})")
            _assert_states_close(s, s2, f"two pieces (cut {cut})")
        st, ys = m.init_state(B, device, x.dtype), []
        for t in range(seq_len):
            y_t, st = m(x[:, t:t + 1], st)
            ys.append(y_t)
        assert_close(y, torch.cat(ys, 1), STATE_RTOL, name="token-by-token decoding")
        _assert_states_close(s, st, "token-by-token decoding")


def check_bidirectional(spec, d_model=32, *, seq_len=17, seed=0, device="cpu"):
    """causal=False: outputs depend on future tokens; a carried state is refused."""
    m = build_variant(spec, d_model, device, seed, causal=False)
    x = _inputs(d_model, seq_len, seed, device)
    t0 = seq_len // 2
    x2 = x.clone()
    x2[:, t0 + 1] += 1.0
    with torch.no_grad():
        y, y2 = m(x)[0], m(x2)[0]
    assert y.shape == x.shape
    assert not torch.allclose(y[:, t0], y2[:, t0]), \
        f"causal=False: output {t0} does not depend on token {t0 + 1}"
    causal_m = build_variant(spec, d_model, device, seed, causal=True)
    try:
        m(x, causal_m.init_state(x.shape[0], device, x.dtype))
    except ValueError:
        pass
    else:
        raise AssertionError("causal=False accepted a carried state")


def check_state_size(spec, d_model=32, *, seq_len=17, seed=0, device="cpu"):
    """state_size(T) == elements in the state after T tokens (per sequence); it is constant in
    T (state_grows_with_seq=False) or grows (True), as the class declares."""
    m = build_variant(spec, d_model, device, seed, causal=True)
    n0 = _numel(m.init_state(1, device))
    assert n0 == m.state_size(0), f"init_state holds {n0} elements, state_size(0)={m.state_size(0)}"
    x = _inputs(d_model, seq_len, seed, device, batch=1)
    with torch.no_grad():
        _, s = m(x, m.init_state(1, device, x.dtype))
    assert _numel(s) == m.state_size(seq_len), (
        f"state after {seq_len} tokens holds {_numel(s)} elements, "
        f"state_size says {m.state_size(seq_len)}")
    sizes = [m.state_size(t) for t in (0, 1, 64, 128, 2 ** 20, 2 ** 21)]
    assert all(isinstance(n, int) and n >= 0 for n in sizes), f"state_size gave {sizes}"
    assert sizes == sorted(sizes), f"state_size must not shrink with T: {sizes}"
    grows = getattr(type(m), "state_grows_with_seq", None)
    if grows is True:
        assert m.state_size(128) > m.state_size(64), \
            "declared growing, but state_size(128) == state_size(64)"
    elif grows is False:
        assert sizes[-1] == sizes[-2], f"declared constant, but state_size grows: {sizes}"


CONTRACT_CHECKS: dict[str, Callable[..., None]] = {
    "config": check_config,
    "unknown_config_field": check_unknown_config_field,
    "output_shape_dtype": check_output_shape_dtype,
    "bad_input": check_bad_input,
    "gradients": check_gradients,
    "causality": check_causality,
    "state_carry": check_state_carry,
    "bidirectional": check_bidirectional,
    "state_size": check_state_size,
}


def check_mixer_contract(spec: Any, d_model: int = 32, *, seq_len: int = 17, seed: int = 0,
                         device: str = "cpu", checks: list[str] | None = None) -> list[str]:
    """Run the contract checks (all, or the named ones) on one mixer spec.

    Raises AssertionError("<check>: <reason>") on the first failure; returns the checks run.
    """
    names = list(CONTRACT_CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CONTRACT_CHECKS]
    if unknown:
        raise KeyError(f"unknown contract checks {unknown}; known: {list(CONTRACT_CHECKS)}")
    for n in names:
        try:
            CONTRACT_CHECKS[n](spec, d_model, seq_len=seq_len, seed=seed, device=device)
        except AssertionError as e:
            raise AssertionError(f"{n}: {e}") from e
    return names

"""EagerOp: eager calls skip the dispatcher, compiled and fake-tensor calls keep the op,
and both give the same values and gradients."""
import pytest
import torch

from mixzoo.kernels._common import EagerOp, assert_close


@torch.library.custom_op("mixzoo_test::scale_add", mutates_args=())
def _scale_add_op(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> tuple[
        torch.Tensor, torch.Tensor]:
    return x * alpha + y, (x * y).sum(-1)


@_scale_add_op.register_fake
def _(x, y, alpha=2.0):
    return torch.empty_like(x), x.new_empty(x.shape[:-1])


@torch.library.custom_op("mixzoo_test::scale_add_bwd", mutates_args=())
def _scale_add_bwd_op(do: torch.Tensor, ds: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                      alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    return do * alpha + ds[..., None] * y, do + ds[..., None] * x


@_scale_add_bwd_op.register_fake
def _(do, ds, x, y, alpha):
    return torch.empty_like(x), torch.empty_like(y)


def _setup(ctx, inputs, output):
    x, y, alpha = inputs
    ctx.save_for_backward(x, y)
    ctx.alpha = alpha


def _backward(ctx, do, ds):
    x, y = ctx.saved_tensors
    dx, dy = scale_add_bwd(do, ds, x, y, ctx.alpha)
    return dx, dy, None


scale_add_bwd = EagerOp(_scale_add_bwd_op)
scale_add = EagerOp(_scale_add_op, _backward, _setup)


class _Spy:
    """Counts calls that went through the custom op (the dispatcher)."""

    def __init__(self, eager_op):
        self.inner, self.calls = eager_op.op, 0

    def __call__(self, *args):
        self.calls += 1
        return self.inner(*args)


@pytest.fixture
def spies(monkeypatch):
    out = []
    for e in (scale_add, scale_add_bwd):
        spy = _Spy(e)
        monkeypatch.setattr(e, "op", spy)
        out.append(spy)
    return out


def _loss(fn, x, y):
    o, s = fn(x, y)
    return (o * o).sum() + (s * s).sum()


def _leaves():
    torch.manual_seed(0)
    return [torch.randn(3, 5, dtype=torch.float64, requires_grad=True) for _ in range(2)]


def test_eager_grad_path_skips_the_dispatcher_and_matches_the_op(spies):
    x, y = _leaves()
    got = torch.autograd.grad(_loss(scale_add, x, y), (x, y))
    assert [s.calls for s in spies] == [0, 0]
    ref = torch.autograd.grad(_loss(_scale_add_op, x, y), (x, y))
    for name, r, g in zip(("dx", "dy"), ref, got):
        assert_close(r, g, 1e-12, name)
    # and against autograd through the plain formula
    auto = torch.autograd.grad(_loss(lambda a, b: (2 * a + b, (a * b).sum(-1)), x, y), (x, y))
    for name, r, g in zip(("dx", "dy"), auto, got):
        assert_close(r, g, 1e-12, name)


def test_no_grad_calls_the_implementation(spies):
    x, y = _leaves()
    with torch.no_grad():
        o, s = scale_add(x, y, 3.0)
    assert spies[0].calls == 0 and o.grad_fn is None
    assert_close(x * 3 + y, o, 0, "o")


def test_compiled_and_fake_calls_keep_the_op(spies):
    x, y = _leaves()
    eager = torch.autograd.grad(_loss(scale_add, x, y), (x, y))
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b: _loss(scale_add, a, b), backend="aot_eager",
                             fullgraph=True)
    got = torch.autograd.grad(compiled(x, y), (x, y))
    assert spies[0].calls >= 1 and spies[1].calls >= 1   # traced through the ops
    for name, r, g in zip(("dx", "dy"), eager, got):
        assert_close(r, g, 1e-12, name)
    from torch._subclasses.fake_tensor import FakeTensorMode
    before = spies[0].calls
    plain = (x.detach(), y.detach())
    with FakeTensorMode() as mode:
        o, _ = scale_add(*(mode.from_tensor(t) for t in plain))
    assert spies[0].calls == before + 1 and o.shape == x.shape


def test_argument_count_errors():
    x, y = _leaves()
    with pytest.raises(TypeError, match="expected at most 3"):
        scale_add(x, y, 2.0, 1.0)
    with pytest.raises(TypeError, match="have no default"):
        scale_add(x)

"""Eager fast path for the kernel packages' torch.library custom ops.

Every kernel is registered as a custom op (custom_op + register_fake + register_autograd)
so that torch.compile traces it without a graph break. In eager mode, though, each call
through the dispatcher and the generated autograd wrapper costs host time: on this
project's CPU host a custom op with autograd took 26 us per forward call against 15 us for
a plain autograd.Function, and the backward op another ~25 us; the H100 host is several
times slower. At training sizes many of our ops run for less GPU time than that (GPU
calls 13-15: the conv and the ViT steps were host-bound).

`EagerOp(op, backward, setup_context)` registers the autograd formula on the op exactly as
`op.register_autograd` does, and is itself a callable with the op's positional signature:

    under torch.compile / export, or on fake / functional tensors   -> the custom op
    eager, a gradient is needed                                      -> an autograd.Function
        built from the op's own Python implementation, the same setup_context and backward
    eager, no gradient needed                                        -> the implementation

So both paths run the same code; only the dispatch differs. Backward formulas call the
backward op through an `EagerOp` too, so an eager backward skips the dispatcher while a
compiled graph's backward (traced on fake tensors) still records the op.
Ops with tensor-list inputs or outputs keep the custom op whenever a gradient is needed
(autograd.Function does not see tensors inside lists).
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch

_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _plain(args) -> bool:
    """True when every tensor in args (lists included) is an ordinary eager tensor."""
    for a in args:
        if isinstance(a, torch.Tensor):
            if type(a) not in _PLAIN:
                return False
        elif isinstance(a, (list, tuple)) and not _plain(a):
            return False
    return True


def _needs_grad(args) -> bool:
    if not torch.is_grad_enabled():
        return False
    for a in args:
        if isinstance(a, torch.Tensor):
            if a.requires_grad:
                return True
        elif isinstance(a, (list, tuple)) and _needs_grad(a):
            return True
    return False


class EagerOp:
    """A custom op with an eager fast path (module docstring). Call it positionally, with
    the op's arguments; `op` stays available for opcheck and fake-tensor tests."""

    def __init__(self, op, backward: Callable | None = None,
                 setup_context: Callable | None = None):
        self.op = op
        self.impl = op._init_fn                     # the decorated Python function
        params = list(inspect.signature(self.impl).parameters.values())
        self._n = len(params)
        self._defaults = [p.default for p in params]
        self._fn = None
        if backward is not None:
            op.register_autograd(backward, setup_context=setup_context)
            schema = str(op._opoverload._schema)
            if "Tensor[]" not in schema and "Tensor?[]" not in schema:
                self._fn = _function(self.impl, backward, setup_context, op._qualname)

    def _full(self, args: tuple) -> tuple:
        if len(args) > self._n:
            raise TypeError(f"{self.op._qualname}: {len(args)} arguments, "
                            f"expected at most {self._n}")
        missing = self._defaults[len(args):]
        if any(d is inspect.Parameter.empty for d in missing):
            raise TypeError(f"{self.op._qualname}: {len(args)} arguments, expected {self._n} "
                            f"(the missing ones have no default)")
        return tuple(args) + tuple(missing)

    def __call__(self, *args):
        if torch.compiler.is_compiling() or not _plain(args):
            return self.op(*args)
        if _needs_grad(args):
            if self._fn is None:
                return self.op(*args)
            return self._fn.apply(*self._full(args))
        return self.impl(*args)


def _function(impl: Callable, backward: Callable, setup_context: Callable | None, name: str):
    def forward(ctx, *args):
        out = impl(*args)
        if setup_context is not None:
            setup_context(ctx, args, out)
        return out

    return type(f"Eager_{name.replace('::', '_')}", (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(backward)})

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is as fast, and immune to a busy machine (oversubscribed
    OpenMP threads spin and slow everything down many times)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY_BASE = {
    "model": {
        "kind": "causal_lm",
        "d_model": 16,
        "vocab_size": "${train.task.vocab_size}",
        "presets": {"dn": {"type": "deltanet", "num_heads": 2},
                    "attn": {"type": "attention", "num_heads": 2, "backend": "sdpa"}},
        "pattern": ["dn"],
        "block": {"mlp": "none"},
    },
    "train": {"device": "cpu"},
}
TINY_TASK = {"type": "mqar", "seq_len": 16, "num_kv_pairs": 2, "vocab_size": 16}
TINY_TRAIN = {"steps": 3, "batch_size": 4, "warmup_steps": 1, "eval_every": 3,
              "eval_batches": 1}


@pytest.fixture
def tiny_grid():
    """A grid dict over the tiny base; tests add axes."""
    def make(**kw):
        g = {"name": "tiny", "base": TINY_BASE, "task": TINY_TASK, "train": TINY_TRAIN}
        g.update(kw)
        return g
    return make

"""The MAD suite's semantics, task by task."""
import torch

import mixzoo
from mixzoo.tasks import IGNORE, build_task
from mixzoo.train import TrainConfig, train


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_in_context_recall():
    task = build_task({"type": "in_context_recall", "vocab_size": 16, "seq_len": 64})
    x, y = task.sample(16, gen())
    for b in range(16):
        table, seen = {}, set()
        for t in range(0, 64, 2):
            k, v = x[b, t].item(), x[b, t + 1].item()
            assert k < 8 <= v
            assert table.setdefault(k, v) == v                   # one map per sequence
            assert y[b, t].item() == (v if k in seen else IGNORE)  # only repeats scored
            assert y[b, t + 1].item() == IGNORE
            seen.add(k)


def test_noisy_recall_keeps_pairs_intact():
    task = build_task({"type": "noisy_recall", "vocab_size": 32, "noise_vocab_size": 16,
                       "seq_len": 64, "frac_noise": 0.25})
    x, y = task.sample(8, gen(1))
    for b in range(8):
        noise = (x[b] >= 16).sum().item()
        assert noise == 16                                       # 25% of 64 positions
        table, seen, t = {}, set(), 0
        while t < 64:
            tok = x[b, t].item()
            if tok >= 16:                                        # a noise token: skip
                assert y[b, t] == IGNORE
                t += 1
                continue
            k, v = tok, x[b, t + 1].item()
            assert k < 8 and 8 <= v < 16
            assert table.setdefault(k, v) == v
            assert y[b, t].item() == (v if k in seen else IGNORE)
            seen.add(k)
            t += 2


def test_fuzzy_recall_scores_value_tokens_of_repeated_pairs():
    task = build_task({"type": "fuzzy_recall", "vocab_size": 16, "seq_len": 128})
    x, y = task.sample(8, gen(2))
    scored = y != IGNORE
    assert scored.any(1).all()
    # every scored target is the next input token, and it is a value token
    nxt = torch.roll(x, -1, dims=1)
    assert torch.equal(y[scored], nxt[scored])
    assert (y[scored] >= 8).all()


def test_selective_copy():
    task = build_task({"type": "selective_copy", "vocab_size": 16, "seq_len": 64,
                       "num_tokens_to_copy": 8})
    x, y = task.sample(8, gen(3))
    ctx = 64 - 8 - 1
    assert (x[:, ctx] == 1).all()
    for b in range(8):
        content = x[b, :ctx][x[b, :ctx] != 0]
        assert len(content) == 8 and (content >= 2).all()
        assert torch.equal(y[b, ctx:ctx + 8], content)            # copied in order
        assert torch.equal(x[b, ctx + 1:], content)               # teacher forcing
        assert (y[b, :ctx] == IGNORE).all() and y[b, -1] == IGNORE


def test_memorization_map_is_fixed():
    task = build_task({"type": "memorization", "vocab_size": 64, "seq_len": 32})
    pairs = {}
    for seed in range(3):
        x, y = task.sample(8, gen(seed))
        for k, v in zip(x[:, 0::2].flatten().tolist(), x[:, 1::2].flatten().tolist()):
            assert pairs.setdefault(k, v) == v                    # across batches and seeds
        assert torch.equal(y[:, 0::2], x[:, 1::2])                 # every key scored
    other = build_task({"type": "memorization", "vocab_size": 64, "seq_len": 32, "map_seed": 1})
    assert not torch.equal(other.table, task.table)


def test_compression_reads_one_vector_through_a_trained_head():
    task = build_task({"type": "compression", "vocab_size": 8, "seq_len": 12})
    x, y = task.sample(4, gen())
    assert (x[:, -1] == 7).all() and (x[:, :-1] < 7).all()
    assert torch.equal(y[:, :-1], x[:, :-1]) and (y[:, -1] == IGNORE).all()
    torch.manual_seed(0)
    model = mixzoo.CausalLM(8, 16, ["deltanet"])
    head = task.make_head(model)
    logits, loss = task.logits_and_loss(model, x, y)
    assert logits.shape == (4, 12, 8) and torch.isfinite(loss)
    # the decoder sees only the last position: changing an earlier token changes the
    # reconstruction only through the model's last hidden state
    h_last = model.backbone(model.embed(x))[0][:, -1]
    torch.testing.assert_close(head(h_last), logits)
    cfg = TrainConfig(task=task.config, steps=4, warmup_steps=1, eval_every=4, batch_size=8,
                      eval_batches=1, device="cpu")
    s = train(model, cfg, progress=False)
    assert 0.0 <= s["final"]["accuracy"] <= 1.0

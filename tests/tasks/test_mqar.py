import torch

from mixzoo.tasks import IGNORE, build_task


def test_mqar_structure():
    n, t, v = 6, 64, 64
    task = build_task({"type": "mqar", "seq_len": t, "num_kv_pairs": n, "vocab_size": v})
    x, y = task.sample(16, torch.Generator().manual_seed(3))
    for b in range(16):
        keys, vals = x[b, 0:2 * n:2], x[b, 1:2 * n:2]
        assert len(set(keys.tolist())) == n                    # distinct keys
        assert (keys < v // 2).all() and (vals >= v // 2).all()
        table = dict(zip(keys.tolist(), vals.tolist()))
        pos = (y[b] != IGNORE).nonzero().flatten()
        assert len(pos) == n                                    # every key asked once
        assert (pos >= 2 * n).all()
        assert sorted(x[b, pos].tolist()) == sorted(keys.tolist())
        for p in pos.tolist():
            assert y[b, p].item() == table[x[b, p].item()]      # target = the key's value
            assert x[b, p + 1].item() == y[b, p].item()         # value follows (teacher forcing)


def test_mqar_queries_favour_near_positions():
    task = build_task({"type": "mqar", "seq_len": 256, "num_kv_pairs": 4, "vocab_size": 64})
    _, y = task.sample(256, torch.Generator().manual_seed(0))
    pos = (y != IGNORE).nonzero()[:, 1].float()
    # power law (a=0.01): most queries sit in the first half of the query region
    assert (pos < 8 + (256 - 8) / 2).float().mean() > 0.6

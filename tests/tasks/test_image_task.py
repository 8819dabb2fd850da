"""image_match: the synthetic long-range image task (generation, semantics, training)."""
import pytest
import torch

from mixzoo.tasks import build_task, list_tasks


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def patches_of(images, p):
    """[B,C,S,S] -> [B, G*G, C, p, p] in row-major patch order."""
    B, C, S, _ = images.shape
    g = S // p
    return images.reshape(B, C, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(B, g * g, C, p, p)


def test_registered_and_deterministic():
    assert "image_match" in list_tasks()
    task = build_task({"type": "image_match", "img_size": 32, "block_size": 2, "noise": 0.5,
                       "num_distractors": 4, "num_patterns": 8})
    x, y = task.sample(8, gen(1))
    x2, y2 = task.sample(8, gen(1))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (8,) and y.dtype == torch.long
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(task.sample(8, gen(2))[0], x)
    again = build_task(task.config.model_dump()).sample(8, gen(1))   # no hidden state
    assert torch.equal(again[0], x) and torch.equal(again[1], y)
    assert build_task({"type": "image_match", "img_size": 32, "seq_len": 64}).seq_len == 64
    assert build_task("image_match").seq_len == 16                  # the default 4x4 tokens
    assert task.seq_len == 64 and task.num_classes == 2 and task.min_distance == 4
    assert task._pairs.shape[1:] == (2, 4)                         # two 2x2 marks


def test_labels_are_balanced():
    _, y = build_task({"type": "image_match", "img_size": 12, "patch_size": 3,
                       "block_size": 1}).sample(2000, gen())
    assert 0.44 < y.float().mean().item() < 0.56


@pytest.mark.parametrize("k", [1, 2])
def test_semantics_two_far_marks_label_is_match(k):
    cfg = {"type": "image_match", "noise": 0.0, "num_distractors": 3, "img_size": 40,
           "patch_size": 5, "min_distance": 4, "block_size": k}
    task = build_task(cfg)
    x, y = task.sample(48, gen())
    pt = patches_of(x, 5)                                         # [B,64,3,5,5]
    frame = torch.ones(5, 5, dtype=torch.bool)
    frame[1:-1, 1:-1] = False
    marked = (pt[..., frame] == 3.0).all(-1).all(-1)              # [B,64]
    assert (marked.sum(1) == 2 * k * k).all()
    book = task.codebook.flatten(1)                               # [N, 3*3*3]
    for b in range(len(y)):
        cells = marked[b].nonzero().flatten().tolist()
        rc = torch.tensor([divmod(i, 8) for i in cells])          # [2k^2, 2]
        first = (rc - rc[0]).abs().amax(1) <= k - 1               # the mark of cells[0]
        a, o = rc[first], rc[~first]
        assert len(a) == len(o) == k * k
        cheb = (a[:, None] - o[None]).abs().amax(-1).min().item()
        rowm = ((a[:, None, 0] - o[None, :, 0]) * 8 + a[:, None, 1] - o[None, :, 1]).abs().min()
        colm = ((a[:, None, 1] - o[None, :, 1]) * 8 + a[:, None, 0] - o[None, :, 0]).abs().min()
        assert min(cheb, rowm.item(), colm.item()) >= 4           # far in 2D and both scans
        ids = []
        for i in cells:                                           # exactly a codebook pattern
            pid = (book - pt[b, i, :, 1:-1, 1:-1].flatten()).abs().sum(1).argmin().item()
            torch.testing.assert_close(pt[b, i, :, 1:-1, 1:-1].flatten(), book[pid])
            ids.append(pid)
        ids = torch.tensor(ids)
        assert len(set(ids[first].tolist())) == len(set(ids[~first].tolist())) == 1
        assert (ids[first][0] == ids[~first][0]).item() == bool(y[b])
        content = pt[b].flatten(1).abs().sum(1) > 0               # unmarked, non-empty
        assert (content & ~marked[b]).sum() == 3                  # the distractors


@pytest.mark.parametrize("cfg, match", [
    ({"img_size": 30}, "multiple of patch_size"),
    ({"img_size": 32, "min_distance": 8}, "impossible"),
    ({"img_size": 32, "block_size": 4}, "impossible"),
    ({"img_size": 32, "seq_len": 63}, "number of patches"),
    ({"vocab_size": 256}, "vocab_size"),
    ({"img_size": 32, "num_distractors": 70}, "do not fit"),
    ({"patch_sz": 4}, "patch_sz"),
])
def test_bad_configs(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_task({"type": "image_match", **cfg})


def test_logits_and_loss_and_metric():
    task = build_task({"type": "image_match", "img_size": 16, "patch_size": 4, "block_size": 1})
    x, y = task.sample(4, gen())
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    logits, loss = task.logits_and_loss(model, x, y)
    assert logits.shape == (4, 2) and loss.ndim == 0
    acc = task.metric(logits, y)["accuracy"]
    assert acc == (logits.argmax(-1) == y).float().mean().item()
    bad = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 5))
    with pytest.raises(ValueError, match="num_classes: 2"):
        task.logits_and_loss(bad, x, y)


def test_trains_a_vision_recipe_through_the_train_loop():
    from mixzoo.recipes import load_recipe
    from mixzoo.train import train_recipe
    recipe = load_recipe({
        "model": {"kind": "vision", "d_model": 32,
                  "layers": [{"type": "deltanet", "num_heads": 2}, {"type": "gla", "num_heads": 2}],
                  "vision": {"base": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 4,
                             "num_classes": 2}},
        "train": {"task": {"type": "image_match", "img_size": 16, "patch_size": 4,
                           "block_size": 1, "num_distractors": 2},
                  "steps": 4, "warmup_steps": 1, "batch_size": 8, "eval_every": 2,
                  "eval_batches": 1, "seed": 0, "device": "cpu"}})
    summary = train_recipe(recipe, progress=False)
    assert summary["steps"] == 4 and len(summary["history"]) == 2
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0
    assert summary["metric"] == "accuracy"

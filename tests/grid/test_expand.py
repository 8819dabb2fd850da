"""Grid expansion: Cartesian product, zip groups, seeds, deterministic run ids, and every
invalid point reported together (with its axis values) before anything runs."""
import pytest

from mixzoo.grid import GridSpecError, GridValidationError, expand_grid, load_grid


def test_product_zip_seeds(tiny_grid):
    spec = load_grid(tiny_grid(
        axes={"model.d_model": [16, 32], "model.pattern": [["dn"], ["attn"], ["dn", "attn"]]},
        zip=[{"train.lr": [1e-3, 3e-3], "train.batch_size": [4, 8]}],
        seeds=[0, 1]))
    points = expand_grid(spec)
    assert len(points) == 2 * 3 * 2 * 2
    first = points[0].values
    assert list(first) == ["model.d_model", "model.pattern", "train.lr", "train.batch_size",
                           "train.seed"]
    # zip keys vary together, never crossed
    assert {(p.values["train.lr"], p.values["train.batch_size"]) for p in points} == {
        (1e-3, 4), (3e-3, 8)}
    # every combination once, and the values really reach the recipes
    combos = {tuple(str(v) for v in p.values.values()) for p in points}
    assert len(combos) == len(points)
    for p in points:
        r = p.recipe
        assert r.model.d_model == p.values["model.d_model"]
        assert r.train.lr == p.values["train.lr"]
        assert r.train.batch_size == p.values["train.batch_size"]
        assert r.train.seed == p.values["train.seed"]
        assert len(r.model.layers) == len(p.values["model.pattern"])
        assert r.train.task.seq_len == 16 and r.model.vocab_size == 16   # grid task applied
        assert r.train.steps == 3
    mixers = {p.mixer for p in points}
    assert mixers == {"deltanet", "attention", "deltanet+attention"}
    # run ids: unique, readable, deterministic
    ids = [p.run_id for p in points]
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith("d_model=16_pattern=dn_lr=0.001_batch_size=4_seed=0-")
    assert ids == [p.run_id for p in expand_grid(load_grid(spec.model_dump()))]


def test_run_id_tracks_the_recipe(tiny_grid):
    a = expand_grid(load_grid(tiny_grid(axes={"model.d_model": [16]})))[0]
    b = expand_grid(load_grid(tiny_grid(axes={"model.d_model": [16]})), ["train.lr=0.01"])[0]
    c = expand_grid(load_grid(tiny_grid(axes={"model.d_model": [16]})), ["train.device=auto"])[0]
    assert a.label == b.label and a.run_id != b.run_id       # same label, other recipe
    assert a.run_id == c.run_id                              # the device is not identity


def test_invalid_points_reported_together(tiny_grid):
    spec = load_grid(tiny_grid(axes={
        "model.d_model": [16, 24],
        "train.lr": [1e-3, -1.0],
        "model.pattern": [["dn"], ["nope"]]}))
    with pytest.raises(GridValidationError) as ei:
        expand_grid(spec)
    msg = str(ei.value)
    # lr=-1 (4 points) or pattern=nope (4 points), 2 overlap: 6 of 8 invalid
    assert "6 of 8 points are invalid" in msg
    assert len(ei.value.problems) == 6
    heads = [ln for ln in msg.splitlines() if ln.startswith("  - ")]   # one per bad point
    assert len(heads) == 6
    assert sum("train.lr=-1" in h for h in heads) == 4
    assert sum("model.pattern=nope" in h for h in heads) == 4
    assert "greater than 0" in msg and "nope" in msg
    bad_values = [v for v, _ in ei.value.problems]
    assert {"model.d_model": 16, "train.lr": 1e-3, "model.pattern": ["nope"]} in bad_values


def test_model_build_errors_are_caught_up_front(tiny_grid):
    # 3 heads do not divide d_model=16: found on the meta device, before any training
    spec = load_grid(tiny_grid(axes={"model.presets.dn.num_heads": [2, 3]}))
    with pytest.raises(GridValidationError, match=r"(?s)1 of 2 points.*num_heads=3.*multiple of num_heads"):
        expand_grid(spec)


def test_bad_grid_files(tmp_path, tiny_grid):
    with pytest.raises(GridSpecError, match="did you mean 'mqar-small'"):
        load_grid("mqar-smal")
    with pytest.raises(GridSpecError, match="axes: .*typo.*|Extra inputs"):
        load_grid(tiny_grid(axess={"model.d_model": [1]}))
    with pytest.raises(GridSpecError, match="same length"):
        load_grid(tiny_grid(zip=[{"train.lr": [1, 2], "train.steps": [1]}]))
    with pytest.raises(GridSpecError, match="varied twice"):
        load_grid(tiny_grid(axes={"train.lr": [1]}, zip=[{"train.lr": [2]}]))
    f = tmp_path / "g.yaml"
    f.write_text("base: x\naxes: [1, 2\n")
    with pytest.raises(GridSpecError, match=r"g.yaml: line \d+, column \d+ YAML syntax error"):
        load_grid(f)


def test_base_path_relative_to_grid_file(tmp_path):
    import yaml
    from tests.grid.conftest import TINY_BASE, TINY_TASK, TINY_TRAIN
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(TINY_BASE))
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(
        {"base": "r.yaml", "task": TINY_TASK, "train": TINY_TRAIN,
         "axes": {"model.d_model": [8, 16]}}))
    spec = load_grid(tmp_path / "g.yaml")
    assert spec.name == "g"
    assert [p.recipe.model.d_model for p in expand_grid(spec)] == [8, 16]


@pytest.mark.parametrize("name", ["mqar-small", "mqar-paper", "mad"])
def test_shipped_grids_expand(name):
    from mixzoo.grid import list_grids
    assert name in list_grids()
    points = expand_grid(load_grid(name))
    assert points and all(p.recipe.train is not None for p in points)

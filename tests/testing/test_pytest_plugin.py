"""The pytest plugin (`pytest11` entry point): `--mixzoo-contract[=PATTERN]`, the
`contract_tests(...)` one-line parametrisation and the `mixzoo_contract` fixture, run in a
separate pytest process on a throwaway project with one deliberately non-causal mixer."""
import importlib.metadata as md
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = '''
from typing import Literal
import torch
from mixzoo import Mixer, MixerConfig, register_mixer

@register_mixer
class ShortLeaky(Mixer):
    """y_t = w * x_t + x_{t+1}: reads the future, so the contract must reject it."""
    class Config(MixerConfig):
        type: Literal["short_leaky"] = "short_leaky"
    def __init__(self, config, d_model, layer_idx=0):
        super().__init__(config, d_model, layer_idx)
        self.w = torch.nn.Parameter(torch.ones(d_model))
    def _forward(self, x, state):
        return x * self.w + torch.roll(x, -1, dims=1), None
    def init_state(self, batch, device=None, dtype=torch.float32):
        return None
    def state_size(self, seq_len):
        return 0
'''

TESTS = '''
from mixzoo.testing.pytest_plugin import contract_tests
test_contract = contract_tests("short_conv", d_model=16, checks=["config", "state_carry"])

def test_fixture(mixzoo_contract):
    assert mixzoo_contract("short_conv", d_model=16, checks=["causality"]) == ["causality"]
'''


def _pytest(tmp_path, *args):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_mine.py").write_text(TESTS)
    installed = any(ep.value == "mixzoo.testing.pytest_plugin"
                    for ep in md.entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "mixzoo.testing.pytest_plugin"]
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "pytest", *plugin, "-q", "-rf",
                           "-p", "no:cacheprovider", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_contract_option_fixture_and_parametrisation(tmp_path):
    proc = _pytest(tmp_path, "--mixzoo-contract=short_*")
    out = proc.stdout
    # 9 checks x {short_conv, short_leaky} + 2 parametrised + 1 fixture test.
    assert "3 failed, 18 passed" in out, out + proc.stderr
    assert proc.returncode == 1
    assert "mixzoo contract: short_leaky fails 'causality'" in out
    assert "FAILED ::mixzoo-contract::short_leaky::causality" in out
    assert "short_conv" not in "".join(ln for ln in out.splitlines() if "FAILED" in ln)


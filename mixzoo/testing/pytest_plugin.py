"""pytest plugin (entry point `pytest11: mixzoo`): the mixer contract suite for plugin authors.

Three ways to check a mixer against the contract (`mixzoo.testing.contract`):

1. From the command line, over every registered mixer matching a pattern (plugins
   included; your package must be installed, or registered by your conftest):

       pytest --mixzoo-contract                 # all registered mixers
       pytest --mixzoo-contract='rwkv*'         # fnmatch pattern over registry names

   Each (mixer, check) pair becomes one test, `mixzoo-contract::<mixer>::<check>`.

2. One line in a test file:

       from mixzoo.testing.pytest_plugin import contract_tests
       test_contract = contract_tests({"type": "rwkv_time_mix", "num_heads": 2}, d_model=32)

3. The `mixzoo_contract` fixture (the `check_mixer_contract` function):

       def test_my_mixer(mixzoo_contract):
           mixzoo_contract("rwkv_time_mix", d_model=64)

This module imports neither torch nor mixzoo's mixers until a contract test runs, so
loading the plugin costs nothing and never imports Triton before a test session's
conftest has configured it (TRITON_INTERPRET must be set before the first @triton.jit).
"""
from __future__ import annotations

from typing import Any

import pytest

__all__ = ["contract_tests", "ContractItem"]

def _contract_checks() -> dict:
    from mixzoo.testing.contract import CONTRACT_CHECKS
    return CONTRACT_CHECKS


def _run_check(spec: Any, check: str, d_model: int, seq_len: int, seed: int,
               device: str) -> None:
    checks = _contract_checks()
    if check not in checks:
        raise KeyError(f"unknown contract check {check!r}; known: {sorted(checks)}")
    checks[check](spec, d_model, seq_len=seq_len, seed=seed, device=device)


def contract_tests(spec: Any, d_model: int = 32, *, checks: list[str] | None = None,
                   seq_len: int = 17, seed: int = 0, device: str = "cpu"):
    """A test function parametrised over the contract checks for one mixer spec
    (a registry name, a dict with `type`, or a Config). Assign it to a `test_*` name."""
    # Called while a test module is imported, i.e. after the conftest files have run.
    names = list(_contract_checks() if checks is None else checks)

    @pytest.mark.parametrize("mixzoo_check", names)
    def test_mixer_contract(mixzoo_check: str) -> None:
        _run_check(spec, mixzoo_check, d_model, seq_len, seed, device)

    return test_mixer_contract


# -- pytest hooks ------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mixzoo", "mixzoo mixer contract suite")
    group.addoption("--mixzoo-contract", action="store", nargs="?", const="*", default=None,
                    metavar="PATTERN",
                    help="run the mixzoo mixer contract suite on every registered mixer whose "
                         "name matches the fnmatch PATTERN (default: all)")
    group.addoption("--mixzoo-contract-d-model", action="store", type=int, default=32,
                    metavar="D", help="model width for the contract suite (default 32)")
    group.addoption("--mixzoo-contract-device", action="store", default="cpu",
                    metavar="DEVICE", help="device for the contract suite (default cpu)")


@pytest.fixture
def mixzoo_contract():
    """`check_mixer_contract(spec, d_model=32, *, seq_len, seed, device, checks)`."""
    from mixzoo.testing.contract import check_mixer_contract
    return check_mixer_contract


class ContractItem(pytest.Item):
    """One contract check on one registered mixer."""

    def __init__(self, *, mixer: str, check: str, d_model: int, device: str, **kw):
        super().__init__(**kw)
        self.mixer, self.check, self.d_model, self.device = mixer, check, d_model, device

    def runtest(self) -> None:
        _run_check(self.mixer, self.check, self.d_model, 17, 0, self.device)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, AssertionError):
            return f"mixzoo contract: {self.mixer} fails {self.check!r}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"mixzoo-contract::{self.mixer}::{self.check}"


class ContractCollector(pytest.Collector):
    """The contract items for every registered mixer matching the pattern."""

    def __init__(self, *, pattern: str, d_model: int, device: str, **kw):
        super().__init__(**kw)
        self.pattern, self.d_model, self.device = pattern, d_model, device

    def collect(self):
        from mixzoo.registry import list_mixers
        names = list_mixers(self.pattern)
        if not names:
            raise pytest.UsageError(f"--mixzoo-contract={self.pattern!r} matches no registered "
                                    f"mixer (registered: {', '.join(list_mixers())})")
        for mixer in names:
            for check in _contract_checks():
                yield ContractItem.from_parent(self, name=f"{mixer}::{check}", mixer=mixer,
                                               check=check, d_model=self.d_model,
                                               device=self.device)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list) -> None:
    """With --mixzoo-contract, append the contract items (before -k/-m selection runs)."""
    pattern = config.getoption("--mixzoo-contract", default=None)
    if pattern is None:
        return
    collector = ContractCollector.from_parent(
        session, name="mixzoo-contract", pattern=pattern,
        d_model=config.getoption("--mixzoo-contract-d-model"),
        device=config.getoption("--mixzoo-contract-device"))
    for item in collector.collect():
        items.append(item)


"""The mixer contract, generated from the registry: every registered mixer (built-ins and
installed plugins) x every check in `mixzoo.testing.CONTRACT_CHECKS`. A new mixer is tested
here without anyone adding a line."""
import pytest

from mixzoo.registry import list_mixers
from mixzoo.testing import CONTRACT_CHECKS, check_mixer_contract


@pytest.mark.parametrize("check", list(CONTRACT_CHECKS))
@pytest.mark.parametrize("name", list_mixers())
def test_contract(name, check):
    CONTRACT_CHECKS[check](name)


def test_builtins_are_registered():
    assert set(list_mixers()) >= {"deltanet", "gla", "retnet", "attention",
                                  "sliding_window", "short_conv"}


def test_check_mixer_contract_runs_the_named_checks():
    assert check_mixer_contract("short_conv", checks=["config", "bad_input"]) == [
        "config", "bad_input"]
    with pytest.raises(KeyError, match="no_such_check"):
        check_mixer_contract("short_conv", checks=["no_such_check"])

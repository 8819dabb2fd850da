"""The README's plugin example really is a valid mixer: it passes the contract suite."""
import pathlib
import re

from mixzoo.registry import unregister_mixer
from mixzoo.testing import check_mixer_contract

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_plugin_example_passes_contract():
    text = README.read_text()
    block = re.search(r"```python\n(from typing import Literal.*?)```", text, re.S)
    assert block, "README lost its plugin example"
    exec(compile(block.group(1), "README.md", "exec"), {})
    try:
        check_mixer_contract("token_shift")
    finally:
        unregister_mixer("token_shift")

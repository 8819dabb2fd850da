"""Test helpers for mixzoo and for plugin authors: the mixer contract suite.

    from mixzoo.testing import check_mixer_contract, CONTRACT_CHECKS
"""
from .contract import (CONTRACT_CHECKS, build_variant, check_bad_input, check_bidirectional,
                       check_causality, check_config, check_gradients, check_mixer_contract,
                       check_output_shape_dtype, check_state_carry, check_state_size,
                       check_unknown_config_field, state_tensors)

__all__ = ["CONTRACT_CHECKS", "build_variant", "check_bad_input", "check_bidirectional",
           "check_causality", "check_config", "check_gradients", "check_mixer_contract",
           "check_output_shape_dtype", "check_state_carry", "check_state_size",
           "check_unknown_config_field", "state_tensors"]

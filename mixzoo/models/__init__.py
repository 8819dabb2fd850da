"""Task heads around a Backbone. (Vision models live in `mixzoo.models.vision`, the only
module that imports timm; it is imported lazily.)"""
from .causal_lm import CausalLM, CausalLMOutput
from .sequence import SequenceModel

__all__ = ["CausalLM", "CausalLMOutput", "SequenceModel"]

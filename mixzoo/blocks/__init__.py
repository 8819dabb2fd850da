"""The one generic Block, its norms and channel mixers, and the Backbone stack."""
from .backbone import Backbone
from .block import Block, BlockConfig
from .mlp import MLP, SwiGLU, build_mlp
from .norms import LayerNorm, RMSNorm, build_norm

__all__ = ["Backbone", "Block", "BlockConfig", "MLP", "SwiGLU", "build_mlp",
           "LayerNorm", "RMSNorm", "build_norm"]

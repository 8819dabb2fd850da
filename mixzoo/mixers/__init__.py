"""The built-in mixers. Importing this package registers every one of them (the registry
imports it on first use); plugins register through the `mixzoo.mixers` entry points."""
from .base import Mixer, MixerConfig, bidirectional
from .attention import AttentionMixer
from .deltanet import DeltaNetMixer
from .gla import GLAMixer
from .retnet import RetNetMixer
from .short_conv import ShortConvMixer
from .sliding_window import SlidingWindowMixer

__all__ = ["Mixer", "MixerConfig", "bidirectional", "AttentionMixer", "DeltaNetMixer",
           "GLAMixer", "RetNetMixer", "ShortConvMixer", "SlidingWindowMixer"]

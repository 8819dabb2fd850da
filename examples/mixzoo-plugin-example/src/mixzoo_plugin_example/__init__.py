"""An example mixzoo plugin: RWKV-4 time mixing as the mixer `rwkv_time_mix`.

Installed, it registers itself through the `mixzoo.mixers` entry point (see pyproject.toml),
so `mixzoo list`, recipes (`{type: rwkv_time_mix}`) and `build_mixer("rwkv_time_mix", 64)`
find it with no change to mixzoo.
"""
from .rwkv import RWKVTimeMix, wkv_chunked, wkv_recurrent

__all__ = ["RWKVTimeMix", "wkv_chunked", "wkv_recurrent"]

"""The mixer registry: a decorator over typed dicts, fnmatch listing, close-match errors,
and lazy entry-point plugin discovery (group `mixzoo.mixers`)."""
from .core import (
    MixerEntry,
    build_mixer,
    get_mixer,
    get_entry,
    list_mixers,
    register_mixer,
    unregister_mixer,
)

__all__ = ["MixerEntry", "build_mixer", "get_mixer", "get_entry", "list_mixers",
           "register_mixer", "unregister_mixer"]

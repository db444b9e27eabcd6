"""libllm: a small, fast LLM inference engine for GGUF models (Python bindings).

Three tiers: :mod:`libllm._lib` declares the C ABI (ctypes), one class per C handle
(:class:`Model`, :class:`Context`, :class:`Sampler`, plus :class:`Batch`) wraps it, and
:class:`LLM` is the friendly API on top.
"""

from __future__ import annotations

from . import _lib, _log
from ._errors import (
    AbortedError,
    CannotRewindError,
    ClosedError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    LibLLMError,
    LibLLMIOError,
    MemoryFullError,
    OutOfMemoryError,
    UnsupportedError,
)
from .batch_gen import BatchGenerator, BatchStats
from .context import Batch, Context
from .llm import LLM, GenerationStats
from .model import Model, TensorInfo
from .prompt_cache import DiskPromptCache, PromptCache, RAMPromptCache
from .sampler import Sampler

_log.install()

__version__: str = _lib.version()


def library_path() -> str:
    """The path of the loaded shared library."""
    return _lib.LIBRARY_PATH


__all__ = [
    "LLM",
    "AbortedError",
    "Batch",
    "BatchGenerator",
    "BatchStats",
    "CannotRewindError",
    "ClosedError",
    "Context",
    "DiskPromptCache",
    "FormatError",
    "GenerationStats",
    "InternalError",
    "InvalidArgumentError",
    "LibLLMError",
    "LibLLMIOError",
    "MemoryFullError",
    "Model",
    "OutOfMemoryError",
    "PromptCache",
    "RAMPromptCache",
    "Sampler",
    "TensorInfo",
    "UnsupportedError",
    "__version__",
    "library_path",
]

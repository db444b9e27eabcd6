"""Sampler: a chain of steps that picks the next token from a row of logits."""

from __future__ import annotations

import ctypes
import secrets
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _lib
from ._errors import check
from ._handle import OwnedHandle
from .context import Context

# The seed that asks for a fresh random seed (llama.cpp's LLAMA_DEFAULT_SEED).
RANDOM_SEED = 0xFFFFFFFF


def resolve_seed(seed: int) -> int:
    """``seed`` as a uint32; RANDOM_SEED (or any negative value) draws a random one."""
    seed = int(seed)
    if seed < 0 or seed == RANDOM_SEED:
        return secrets.randbelow(RANDOM_SEED)
    if seed > RANDOM_SEED:
        raise ValueError(f"seed must be below 2**32, got {seed}")
    return seed


class Sampler(OwnedHandle[_lib.llm_sampler_p]):
    """A chain of sampling steps applied in the order they were added.

    ``Sampler(...)`` builds the usual chain: penalties -> top-k -> top-p -> min-p ->
    temperature -> seeded draw, or penalties -> greedy when ``temperature <= 0``.
    ``Sampler.chain()`` starts an empty chain to build with the ``add_*`` methods (each
    returns the sampler); a chain without a selecting step ends with greedy selection.

    A seed of 0xFFFFFFFF (the default) or a negative seed draws a random seed.
    """

    def __init__(
        self,
        *,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        penalty_last_n: int = 64,
        seed: int = RANDOM_SEED,
    ) -> None:
        self._create()
        try:
            if penalty_last_n != 0 and (
                repeat_penalty != 1.0 or frequency_penalty != 0.0 or presence_penalty != 0.0
            ):
                self.add_penalties(
                    penalty_last_n, repeat_penalty, frequency_penalty, presence_penalty
                )
            if temperature <= 0:
                self.add_greedy()
            else:
                self.add_top_k(top_k)
                self.add_top_p(top_p, 1)
                self.add_min_p(min_p, 1)
                self.add_temp(temperature)
                self.add_dist(seed)
        except BaseException:
            self.close()
            raise

    @classmethod
    def chain(cls) -> Sampler:
        """An empty chain."""
        sampler = cls.__new__(cls)
        sampler._create()
        return sampler

    def _create(self) -> None:
        self._handle: _lib.llm_sampler_p | None = None
        self._free_fn: Any = _lib.lib.llm_sampler_free
        out = _lib.llm_sampler_p()
        check(int(_lib.lib.llm_sampler_chain_create(ctypes.byref(out))))
        self._handle = out

    # -- lifetime ------------------------------------------------------------------------


    def add_penalties(
        self, last_n: int, repeat: float, frequency: float = 0.0, presence: float = 0.0
    ) -> Sampler:
        """Penalties over the last ``last_n`` accepted tokens (llama.cpp semantics): repeat
        divides positive logits and multiplies negative ones (1: off); frequency subtracts
        frequency * count; presence subtracts presence once per seen token."""
        check(
            int(
                _lib.lib.llm_sampler_add_penalties(
                    self.handle,
                    _lib.as_int32(last_n, "last_n"),
                    float(repeat),
                    float(frequency),
                    float(presence),
                )
            )
        )
        return self

    def add_top_k(self, k: int) -> Sampler:
        """Keeps the ``k`` most likely tokens (k <= 0: off)."""
        check(int(_lib.lib.llm_sampler_add_top_k(self.handle, _lib.as_int32(k, "k"))))
        return self

    def add_top_p(self, p: float, min_keep: int = 1) -> Sampler:
        """Nucleus filtering: keeps the most likely tokens whose probabilities sum to ``p``."""
        check(
            int(
                _lib.lib.llm_sampler_add_top_p(
                    self.handle, float(p), _lib.as_int32(min_keep, "min_keep")
                )
            )
        )
        return self

    def add_min_p(self, p: float, min_keep: int = 1) -> Sampler:
        """Keeps tokens at least ``p`` times as likely as the most likely one."""
        check(
            int(
                _lib.lib.llm_sampler_add_min_p(
                    self.handle, float(p), _lib.as_int32(min_keep, "min_keep")
                )
            )
        )
        return self

    def add_temp(self, temperature: float) -> Sampler:
        """Divides the logits by ``temperature``."""
        check(int(_lib.lib.llm_sampler_add_temp(self.handle, float(temperature))))
        return self

    def add_greedy(self) -> Sampler:
        """Selects the most likely token."""
        check(int(_lib.lib.llm_sampler_add_greedy(self.handle)))
        return self

    def add_dist(self, seed: int = RANDOM_SEED) -> Sampler:
        """Draws a token from the distribution with a seeded generator."""
        check(int(_lib.lib.llm_sampler_add_dist(self.handle, resolve_seed(seed))))
        return self

    # -- sampling ------------------------------------------------------------------------

    def sample(self, ctx: Context, idx: int = -1) -> int:
        """Picks a token from the logits of batch token ``idx`` of the context's last decode,
        and accepts it (it enters the penalty history)."""
        if not isinstance(ctx, Context):
            raise TypeError(f"sample needs a libllm.Context, got {type(ctx).__name__}")
        out = ctypes.c_int32()
        check(
            int(
                _lib.lib.llm_sampler_sample(
                    self.handle, ctx.handle, _lib.as_int32(idx, "idx"), ctypes.byref(out)
                )
            )
        )
        return int(out.value)

    def sample_logits(self, logits: npt.ArrayLike) -> int:
        """Picks a token from a caller's row of logits (not modified). Does not accept."""
        row: npt.NDArray[np.float32] = np.ascontiguousarray(logits, dtype=np.float32)
        if row.ndim != 1 or row.size == 0:
            raise ValueError(f"sample_logits needs one non-empty row, got shape {row.shape}")
        out = ctypes.c_int32()
        ptr = row.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        check(
            int(
                _lib.lib.llm_sampler_sample_logits(
                    self.handle, ptr, _lib.as_int32(row.size, "n_vocab"), ctypes.byref(out)
                )
            )
        )
        return int(out.value)

    def accept(self, token: int) -> None:
        """Adds ``token`` to the penalty history (e.g. the prompt's tokens)."""
        _lib.lib.llm_sampler_accept(self.handle, _lib.as_int32(token, "token"))

    def reset(self) -> None:
        """Clears the history and reseeds each draw step with its original seed."""
        _lib.lib.llm_sampler_reset(self.handle)

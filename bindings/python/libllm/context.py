"""Context (a KV cache plus compute buffers over a Model) and Batch (tokens to decode)."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from . import _lib
from ._callback import ProgressCallback
from ._errors import CannotRewindError, InvalidArgumentError, check, error_for, last_error_message
from ._handle import OwnedHandle
from .model import Model

# Names accepted for the cache types (type_k, type_v), and their llm_type ids.
CACHE_TYPES = {
    "f32": _lib.TYPE_F32,
    "f16": _lib.TYPE_F16,
    "bf16": _lib.TYPE_BF16,
    "q8_0": _lib.TYPE_Q8_0,
    "q4_0": _lib.TYPE_Q4_0,
}

_LOGITS_MODES = ("last", "all", "none")


def _cache_type(name: str, what: str) -> int:
    try:
        return CACHE_TYPES[name.lower()]
    except (KeyError, AttributeError):
        choices = ", ".join(CACHE_TYPES)
        raise ValueError(f"{what} must be one of {choices}; got {name!r}") from None


def _context_params(
    n_ctx: int,
    n_batch: int,
    n_ubatch: int,
    n_seq_max: int,
    n_threads: int,
    seed: int,
    type_k: str,
    type_v: str,
    snapshot_interval: int = 0,
    n_snapshots: int = 0,
) -> _lib.llm_context_params:
    params = _lib.llm_context_params()
    _lib.lib.llm_context_default_params(ctypes.byref(params))
    params.n_ctx = _lib.as_uint32(n_ctx, "n_ctx")
    params.n_batch = _lib.as_uint32(n_batch, "n_batch")
    params.n_ubatch = _lib.as_uint32(n_ubatch, "n_ubatch")
    params.n_seq_max = _lib.as_uint32(n_seq_max, "n_seq_max")
    params.n_threads = _lib.as_int32(n_threads, "n_threads")
    params.seed = _lib.as_uint32(seed, "seed")
    params.type_k = _cache_type(type_k, "type_k")
    params.type_v = _cache_type(type_v, "type_v")
    params.snapshot_interval = _lib.as_uint32(snapshot_interval, "snapshot_interval")
    params.n_snapshots = _lib.as_uint32(n_snapshots, "n_snapshots")
    return params


def _breakdown(call: Callable[[Any], int]) -> dict[str, int]:
    """Runs an llm_memory_breakdown_* call for the host entry and returns it as a dict."""
    out = _lib.llm_memory_breakdown()
    out.size = ctypes.sizeof(_lib.llm_memory_breakdown)
    if call(ctypes.byref(out)) < 0:
        raise error_for(_lib.STATUS_INVALID_ARGUMENT)
    names = [field[0] for field in _lib.llm_memory_breakdown._fields_]
    return {name: int(getattr(out, name)) for name in names if name != "size"}


class Batch:
    """Tokens for one :meth:`Context.decode` call.

    Token ``i`` has an id, a position, the sequences it belongs to (up to ``n_seq_max``), and
    a flag saying whether its logits are wanted. The arrays are owned by this object (numpy)
    and the C ``llm_batch`` struct points into them, so no C allocation is involved.

    Args:
        capacity: the most tokens the batch holds.
        n_seq_max: the most sequences one token may belong to.
    """

    def __init__(self, capacity: int, n_seq_max: int = 1) -> None:
        capacity = int(capacity)
        n_seq_max = int(n_seq_max)
        if not 1 <= capacity < 2**31:
            raise ValueError(f"Batch capacity must be at least 1, got {capacity}")
        if not 1 <= n_seq_max < 2**31:
            raise ValueError(f"Batch n_seq_max must be at least 1, got {n_seq_max}")
        self._capacity = capacity
        self._n_seq_max = n_seq_max
        self._n = 0
        self._token = np.zeros(capacity, dtype=np.int32)
        self._pos = np.zeros(capacity, dtype=np.int32)
        self._n_seq_id = np.zeros(capacity, dtype=np.int32)
        self._seq_id = np.zeros((capacity, n_seq_max), dtype=np.int32)
        self._logits = np.zeros(capacity, dtype=np.int8)

        int32_p = ctypes.POINTER(ctypes.c_int32)
        row0 = int(self._seq_id.ctypes.data)
        stride = int(self._seq_id.strides[0])
        self._seq_rows = (int32_p * capacity)(
            *[ctypes.cast(row0 + i * stride, int32_p) for i in range(capacity)]
        )
        self.c_batch = _lib.llm_batch(
            0,
            self._token.ctypes.data_as(int32_p),
            self._pos.ctypes.data_as(int32_p),
            self._n_seq_id.ctypes.data_as(int32_p),
            ctypes.cast(self._seq_rows, ctypes.POINTER(int32_p)),
            self._logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def n_seq_max(self) -> int:
        return self._n_seq_max

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"<libllm.Batch {self._n}/{self._capacity} tokens>"

    @property
    def token(self) -> npt.NDArray[np.int32]:
        """The token ids added so far (a read-only view)."""
        view = self._token[: self._n]
        view.flags.writeable = False
        return view

    @property
    def pos(self) -> npt.NDArray[np.int32]:
        """The positions added so far (a read-only view)."""
        view = self._pos[: self._n]
        view.flags.writeable = False
        return view

    def clear(self) -> None:
        """Empties the batch (capacity is kept)."""
        self._n = 0
        self.c_batch.n_tokens = 0

    def add(self, token: int, pos: int, seq_ids: int | Sequence[int], logits: bool = False) -> None:
        """Appends a token at position ``pos`` of the sequence(s) ``seq_ids``; ``logits``
        asks for its output row."""
        if self._n >= self._capacity:
            raise IndexError(f"the Batch is full ({self._capacity} tokens)")
        ids = [seq_ids] if isinstance(seq_ids, (int, np.integer)) else list(seq_ids)
        if not 1 <= len(ids) <= self._n_seq_max:
            raise ValueError(
                f"a token belongs to 1 to {self._n_seq_max} sequences here, got {len(ids)}"
            )
        i = self._n
        self._token[i] = _lib.as_int32(token, "token")
        self._pos[i] = _lib.as_int32(pos, "pos")
        self._n_seq_id[i] = len(ids)
        for j, seq in enumerate(ids):
            self._seq_id[i, j] = _lib.as_int32(seq, "seq_id")
        self._logits[i] = 1 if logits else 0
        self._n = i + 1
        self.c_batch.n_tokens = self._n

    def set_logits(self, i: int, flag: bool = True) -> None:
        """Sets whether token ``i`` (negative counts from the end) wants its logits."""
        if not -self._n <= i < self._n:
            raise IndexError(f"token index {i} out of range for a batch of {self._n}")
        self._logits[i % self._n] = 1 if flag else 0


class Context(OwnedHandle[_lib.llm_context_p]):
    """A KV cache and compute buffers over a :class:`Model`, used by one thread at a time.

    Everything is allocated at creation, so decoding does not allocate. The context keeps its
    model alive; it is freed by :meth:`close`, a ``with`` block, or garbage collection.

    Args:
        model: the model (must not be vocab_only).
        n_ctx: KV cells (0: the model's training context).
        n_batch: the most tokens one decode call accepts.
        n_ubatch: the most tokens computed at once (micro-batch).
        n_seq_max: distinct sequence ids, 1..256.
        n_threads: compute threads (<= 0: the number of cores).
        seed: reserved for stochastic parts of the context.
        type_k, type_v: cache types, "f32", "f16", "bf16", "q8_0" or "q4_0".
        abort_callback: polled between micro-batches; returning True aborts the decode
            (AbortedError).
        snapshot_interval: recurrent and hybrid models: keep a snapshot of each sequence's
            state every this many positions (0: off), so that :meth:`seq_rm` of a tail
            rolls the sequence back to the newest snapshot before it.
        n_snapshots: the snapshot pool (0: 8 per sequence).
    """

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int = 0,
        n_batch: int = 512,
        n_ubatch: int = 512,
        n_seq_max: int = 1,
        n_threads: int = 0,
        seed: int = 0,
        type_k: str = "f16",
        type_v: str = "f16",
        abort_callback: Callable[[], bool] | None = None,
        snapshot_interval: int = 0,
        n_snapshots: int = 0,
    ) -> None:
        self._handle: _lib.llm_context_p | None = None
        self._free_fn: Any = _lib.lib.llm_context_free
        if not isinstance(model, Model):
            raise TypeError(f"Context needs a libllm.Model, got {type(model).__name__}")
        self._model = model
        self._batch: Batch | None = None

        params = _context_params(
            n_ctx, n_batch, n_ubatch, n_seq_max, n_threads, seed, type_k, type_v,
            snapshot_interval, n_snapshots,
        )
        self._abort: ProgressCallback | None = None
        if abort_callback is not None:
            user_fn = abort_callback
            self._abort = ProgressCallback(lambda _progress: not user_fn())
            params.abort_callback = self._abort.c_func

        out = _lib.llm_context_p()
        check(
            int(_lib.lib.llm_context_create(model.handle, ctypes.byref(params), ctypes.byref(out)))
        )
        self._handle = out
        model._attach_context(self)
        self._n_vocab = model.n_vocab

    # -- lifetime ------------------------------------------------------------------------

    def _after_close(self) -> None:
        self._model._detach_context(self)   # the model may be freed now

    def __repr__(self) -> str:
        if self._handle is None:
            return "<libllm.Context (closed)>"
        return f"<libllm.Context n_ctx={self.n_ctx} n_seq_max={self.n_seq_max}>"

    # -- properties ----------------------------------------------------------------------

    @property
    def model(self) -> Model:
        return self._model

    @property
    def n_ctx(self) -> int:
        return int(_lib.lib.llm_context_n_ctx(self.handle))

    @property
    def n_batch(self) -> int:
        return int(_lib.lib.llm_context_n_batch(self.handle))

    @property
    def n_ubatch(self) -> int:
        return int(_lib.lib.llm_context_n_ubatch(self.handle))

    @property
    def n_seq_max(self) -> int:
        return int(_lib.lib.llm_context_n_seq_max(self.handle))

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    def set_n_threads(self, n_threads: int) -> None:
        """Changes the compute thread count (<= 0: the number of cores)."""
        check(
            int(
                _lib.lib.llm_context_set_n_threads(
                    self.handle, _lib.as_int32(n_threads, "n_threads")
                )
            )
        )

    def stats(self) -> dict[str, int]:
        """Allocation and decode counters, and KV cell usage (llm_context_stats)."""
        stats = _lib.llm_context_stats()
        stats.size = ctypes.sizeof(_lib.llm_context_stats)
        check(int(_lib.lib.llm_context_get_stats(self.handle, ctypes.byref(stats))))
        names = [field[0] for field in _lib.llm_context_stats._fields_]
        return {name: int(getattr(stats, name)) for name in names if name != "size"}

    def memory_breakdown(self) -> dict[str, int]:
        """Bytes of host memory by use: weights_mapped, weights_resident, k, v, recurrent,
        compute (device -1 is the host)."""
        handle = self.handle
        return _breakdown(lambda out: int(_lib.lib.llm_memory_breakdown_get(handle, out, 1)))

    @staticmethod
    def estimate_memory(
        model: Model,
        *,
        n_ctx: int = 0,
        n_batch: int = 512,
        n_ubatch: int = 512,
        n_seq_max: int = 1,
        n_threads: int = 0,
        type_k: str = "f16",
        type_v: str = "f16",
        snapshot_interval: int = 0,
        n_snapshots: int = 0,
    ) -> dict[str, int]:
        """The :meth:`memory_breakdown` a context with these parameters would have, computed
        before creating it."""
        params = _context_params(n_ctx, n_batch, n_ubatch, n_seq_max, n_threads, 0, type_k,
                                 type_v, snapshot_interval, n_snapshots)
        handle = model.handle
        return _breakdown(
            lambda out: int(
                _lib.lib.llm_memory_breakdown_estimate(handle, ctypes.byref(params), out, 1)
            )
        )

    # -- decoding ------------------------------------------------------------------------

    def decode(self, batch: Batch) -> None:
        """Runs the model over ``batch``.

        Raises:
            InvalidArgumentError: a bad batch (token id, position, sequence id, too many
                tokens); nothing changed.
            MemoryFullError: the batch does not fit in the free cells; nothing changed.
            AbortedError: the abort callback stopped it (finished micro-batches stay).
        """
        if not isinstance(batch, Batch):
            raise TypeError(f"decode needs a libllm.Batch, got {type(batch).__name__}")
        status = int(_lib.lib.llm_decode(self.handle, ctypes.byref(batch.c_batch)))
        error = error_for(status) if status != _lib.STATUS_OK else None
        if self._abort is not None:
            self._abort.reraise()
        if error is not None:
            raise error

    def decode_tokens(
        self,
        tokens: Sequence[int],
        pos0: int | None = None,
        seq_id: int = 0,
        logits: str = "last",
    ) -> None:
        """Decodes ``tokens`` into sequence ``seq_id`` in chunks of ``n_batch``.

        Args:
            pos0: position of the first token; None continues the sequence
                (``seq_pos_max(seq_id) + 1``).
            logits: "last" (only the last token), "all" (every token of the last chunk is
                available afterwards) or "none".

        A failure in a later chunk leaves the earlier chunks in the cache.
        """
        if logits not in _LOGITS_MODES:
            raise ValueError(f"logits must be one of {', '.join(_LOGITS_MODES)}; got {logits!r}")
        n = len(tokens)
        if n == 0:
            raise ValueError("decode_tokens needs at least one token")
        if pos0 is None:
            pos0 = self.seq_pos_max(seq_id) + 1
        n_batch = self.n_batch
        batch = self._batch
        if batch is None or batch.capacity != n_batch:
            batch = self._batch = Batch(n_batch, 1)
        for start in range(0, n, n_batch):
            batch.clear()
            stop = min(start + n_batch, n)
            for i in range(start, stop):
                want = logits == "all" or (logits == "last" and i == n - 1)
                batch.add(tokens[i], pos0 + i, seq_id, want)
            self.decode(batch)

    @property
    def n_outputs(self) -> int:
        """Rows of logits from the last decode: one per flagged token, in batch order."""
        return int(_lib.lib.llm_n_outputs(self.handle))

    def logits(self, i: int = -1) -> npt.NDArray[np.float32]:
        """The logits of batch token ``i`` of the last decode (negative counts from the end).

        This is a zero-copy float32 view of ``n_vocab`` values in the context's memory: it is
        valid only until the next decode (or close); copy it (``.copy()``) to keep it.
        InvalidArgumentError if that token's logits were not requested."""
        ptr = _lib.lib.llm_get_logits_ith(self.handle, _lib.as_int32(i, "index"))
        if not ptr:
            raise InvalidArgumentError(
                _lib.STATUS_INVALID_ARGUMENT,
                last_error_message() or f"no logits for batch token {i}",
            )
        view: npt.NDArray[np.float32] = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))
        return view

    def all_logits(self) -> npt.NDArray[np.float32]:
        """Every output row of the last decode as a zero-copy view of shape
        (n_outputs, n_vocab); same lifetime as :meth:`logits`. Empty if there are none."""
        handle = self.handle
        n_outputs = int(_lib.lib.llm_n_outputs(handle))
        ptr = _lib.lib.llm_get_logits(handle)
        if n_outputs <= 0 or not ptr:
            return np.zeros((0, self._n_vocab), dtype=np.float32)
        view: npt.NDArray[np.float32] = np.ctypeslib.as_array(ptr, shape=(n_outputs, self._n_vocab))
        return view

    # -- memory --------------------------------------------------------------------------

    def memory_clear(self) -> None:
        """Drops every cell and sequence."""
        _lib.lib.llm_memory_clear(self.handle)

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> None:
        """Removes positions [p0, p1) of ``seq`` (seq < 0: of every sequence; p0 < 0: from the
        start; p1 < 0: to the end). CannotRewindError for a partial range of recurrent
        state, unless it is a tail and the context keeps snapshots: the sequence then rolls
        back to its newest snapshot before p0 (:meth:`seq_pos_max` says where it ends)."""
        check(
            int(
                _lib.lib.llm_memory_seq_rm(
                    self.handle,
                    _lib.as_int32(seq, "seq"),
                    _lib.as_int32(p0, "p0"),
                    _lib.as_int32(p1, "p1"),
                )
            )
        )

    def seq_truncate(self, seq: int, n: int) -> int:
        """Keeps the first ``n`` positions of ``seq`` and drops the rest. A recurrent state
        with snapshots rolls back to its newest snapshot before ``n``; when the memory cannot
        rewind at all (recurrent state without such a snapshot, a sliding window that has
        already dropped what position n needs), the whole sequence goes instead. Returns the
        positions kept (at most n; the caller decodes the rest again)."""
        try:
            self.seq_rm(seq, n, -1)
            return min(n, self.seq_pos_max(seq) + 1)
        except CannotRewindError:
            self.seq_rm(seq)
            return 0

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Makes ``dst`` share ``src``'s cells in [p0, p1) (no data copied); dst's old cells in
        that range are dropped first."""
        check(
            int(
                _lib.lib.llm_memory_seq_cp(
                    self.handle,
                    _lib.as_int32(src, "src"),
                    _lib.as_int32(dst, "dst"),
                    _lib.as_int32(p0, "p0"),
                    _lib.as_int32(p1, "p1"),
                )
            )
        )

    def seq_keep(self, seq: int) -> None:
        """Removes every sequence but ``seq``."""
        check(int(_lib.lib.llm_memory_seq_keep(self.handle, _lib.as_int32(seq, "seq"))))

    def seq_add(self, seq: int, p0: int, p1: int, delta: int) -> None:
        """Adds ``delta`` to the positions [p0, p1) of ``seq`` (a context shift); cached keys
        are re-rotated before the next decode. Cells shared with other sequences are copied
        first (MemoryFullError when there is no room for that; nothing changes). Cells moved
        below position 0 are dropped."""
        check(
            int(
                _lib.lib.llm_memory_seq_add(
                    self.handle,
                    _lib.as_int32(seq, "seq"),
                    _lib.as_int32(p0, "p0"),
                    _lib.as_int32(p1, "p1"),
                    _lib.as_int32(delta, "delta"),
                )
            )
        )

    def seq_div(self, seq: int, p0: int, p1: int, d: int) -> None:
        """Divides the positions [p0, p1) of ``seq`` by ``d`` > 0 (self-extend); the rules of
        :meth:`seq_add` apply."""
        check(
            int(
                _lib.lib.llm_memory_seq_div(
                    self.handle,
                    _lib.as_int32(seq, "seq"),
                    _lib.as_int32(p0, "p0"),
                    _lib.as_int32(p1, "p1"),
                    _lib.as_int32(d, "d"),
                )
            )
        )

    def seq_pos_min(self, seq: int) -> int:
        """Smallest position of ``seq`` in the cache, -1 when it is empty or invalid."""
        return int(_lib.lib.llm_memory_seq_pos_min(self.handle, _lib.as_int32(seq, "seq")))

    def seq_pos_max(self, seq: int) -> int:
        """Largest position of ``seq`` in the cache, -1 when it is empty or invalid."""
        return int(_lib.lib.llm_memory_seq_pos_max(self.handle, _lib.as_int32(seq, "seq")))

    # -- state save / restore ------------------------------------------------------------
    #
    # A state is a versioned, checksummed byte string tied to the model it came from. Loading
    # a truncated, corrupted, foreign or other-model state raises FormatError and leaves the
    # context exactly as it was.

    def save_state(self) -> bytes:
        """The whole context's state: every cell with its sequences, and the last logits."""
        handle = self.handle
        size = int(_lib.lib.llm_state_size(handle))
        buf = (ctypes.c_uint8 * max(size, 1))()
        written = ctypes.c_size_t(0)
        check(int(_lib.lib.llm_state_save(handle, buf, size, ctypes.byref(written))))
        return ctypes.string_at(buf, written.value)

    def load_state(self, data: bytes | bytearray | memoryview) -> None:
        """Replaces the memory and last outputs by a saved state (from any context of the same
        model whose cells fit: else MemoryFullError)."""
        ptr, size = _bytes_arg(data)
        check(int(_lib.lib.llm_state_load(self.handle, ptr, size)))

    def save_seq(self, seq: int) -> bytes:
        """The state of one sequence: only its cells (no logits)."""
        handle = self.handle
        seq = _lib.as_int32(seq, "seq")
        size = int(_lib.lib.llm_state_seq_size(handle, seq))
        buf = (ctypes.c_uint8 * max(size, 1))()
        written = ctypes.c_size_t(0)
        check(int(_lib.lib.llm_state_seq_save(handle, seq, buf, size, ctypes.byref(written))))
        return ctypes.string_at(buf, written.value)

    def load_seq(self, data: bytes | bytearray | memoryview, seq: int) -> None:
        """Restores a saved sequence into sequence ``seq`` (any id): its current cells are
        dropped and the saved ones placed in free cells (MemoryFullError when they do not
        fit). Nothing changes on any failure."""
        ptr, size = _bytes_arg(data)
        check(int(_lib.lib.llm_state_seq_load(self.handle, _lib.as_int32(seq, "seq"), ptr, size)))

    def save_state_file(self, path: str | os.PathLike[str]) -> None:
        """:meth:`save_state` to a file (written whole, then renamed into place)."""
        check(int(_lib.lib.llm_state_save_file(self.handle, os.fsencode(path))))

    def load_state_file(self, path: str | os.PathLike[str]) -> None:
        """:meth:`load_state` from a file."""
        check(int(_lib.lib.llm_state_load_file(self.handle, os.fsencode(path))))

    def save_seq_file(self, seq: int, path: str | os.PathLike[str]) -> None:
        """:meth:`save_seq` to a file."""
        seq = _lib.as_int32(seq, "seq")
        check(int(_lib.lib.llm_state_seq_save_file(self.handle, seq, os.fsencode(path))))

    def load_seq_file(self, seq: int, path: str | os.PathLike[str]) -> None:
        """:meth:`load_seq` from a file, into sequence ``seq``."""
        seq = _lib.as_int32(seq, "seq")
        check(int(_lib.lib.llm_state_seq_load_file(self.handle, seq, os.fsencode(path))))


def _bytes_arg(data: bytes | bytearray | memoryview) -> tuple[Any, int]:
    """A (const uint8_t *, size) pair over a bytes-like object, without copying it. The
    pointer is valid while ``data`` lives (the caller keeps it for the call)."""
    view: npt.NDArray[np.uint8] = np.frombuffer(data, dtype=np.uint8)
    return view.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), int(view.size)

"""Model: a loaded GGUF file (weights, hyper-parameters, metadata and tokenizer)."""

from __future__ import annotations

import ctypes
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import numpy.typing as npt

from . import _lib
from ._callback import ProgressCallback
from ._errors import InvalidArgumentError, check, error_for, last_error_message
from ._handle import OwnedHandle

if TYPE_CHECKING:

    from .context import Context

_TYPE_NAMES = {
    _lib.TYPE_F32: "F32",
    _lib.TYPE_F16: "F16",
    _lib.TYPE_Q4_0: "Q4_0",
    _lib.TYPE_Q8_0: "Q8_0",
    _lib.TYPE_BF16: "BF16",
}


def type_name(type_id: int) -> str:
    """The name of a tensor type id: "F32", "F16", "Q4_0", "Q8_0", "BF16", else "type<N>"."""
    return _TYPE_NAMES.get(type_id, f"type{type_id}")


@dataclass(frozen=True)
class TensorInfo:
    """One weight tensor of a model.

    ``shape`` is in numpy order (outermost first), the reverse of GGUF's ``ne``: a matrix
    stored with ne = [n_embd, n_vocab] has shape (n_vocab, n_embd).
    """

    name: str
    type: int
    type_name: str
    shape: tuple[int, ...]
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _int32_array(ids: Sequence[int]) -> npt.NDArray[np.int32]:
    try:
        wide = np.asarray(ids, dtype=np.int64).reshape(-1)
    except (OverflowError, ValueError, TypeError) as exc:
        raise ValueError(f"token ids must be integers that fit in int32: {exc}") from exc
    if wide.size and (int(wide.min()) < -(2**31) or int(wide.max()) >= 2**31):
        raise ValueError("token ids must be integers that fit in int32")
    return np.ascontiguousarray(wide, dtype=np.int32)


class Model(OwnedHandle[_lib.llm_model_p]):
    """A GGUF model loaded by libllm.

    The model is read-only after loading and may be shared by any number of contexts. It is
    freed by :meth:`close`, by leaving a ``with`` block, or when garbage collected; contexts
    created from it keep it alive, and closing the model closes them first.

    Args:
        path: the GGUF file.
        n_gpu_layers: layers to offload to a GPU (0: CPU only).
        use_mmap: map the file (default) instead of reading it into memory.
        vocab_only: load only the tokenizer (no weights; no contexts can be created).
        progress: called with the loading progress in [0, 1]; returning False aborts the load
            (AbortedError). Returning None continues.

    Raises:
        LibLLMIOError: the file cannot be opened or read (an OSError).
        FormatError: the file is not a valid GGUF file.
        UnsupportedError: the model uses something libllm lacks.
        AbortedError: ``progress`` returned False.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_gpu_layers: int = 0,
        use_mmap: bool = True,
        vocab_only: bool = False,
        progress: Callable[[float], bool | None] | None = None,
    ) -> None:
        self._handle: _lib.llm_model_p | None = None
        self._free_fn: Any = _lib.lib.llm_model_free
        self._contexts: weakref.WeakSet[Context] = weakref.WeakSet()
        self._n_contexts = 0
        self._close_pending = False
        self._tensor_index: dict[str, TensorInfo] | None = None
        self.path = os.fspath(path)

        params = _lib.llm_model_params()
        _lib.lib.llm_model_default_params(ctypes.byref(params))
        params.n_gpu_layers = _lib.as_int32(n_gpu_layers, "n_gpu_layers")
        params.use_mmap = bool(use_mmap)
        params.vocab_only = bool(vocab_only)
        callback: ProgressCallback | None = None
        if progress is not None:
            user_fn = progress

            def keep_going(p: float) -> bool:
                result = user_fn(p)
                return result is None or bool(result)

            callback = ProgressCallback(keep_going)
            params.progress = callback.c_func

        out = _lib.llm_model_p()
        status = int(
            _lib.lib.llm_model_load(os.fsencode(self.path), ctypes.byref(params), ctypes.byref(out))
        )
        error = error_for(status) if status != _lib.STATUS_OK else None
        if callback is not None:
            try:
                callback.reraise()
            except BaseException:
                if out.value:
                    _lib.lib.llm_model_free(out)
                raise
        if error is not None:
            if out.value:  # the contract says NULL on failure; be safe anyway
                _lib.lib.llm_model_free(out)
            raise error
        self._handle = out

    # -- lifetime ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._handle is None or self._close_pending

    def close(self) -> None:
        """Closes every context created from this model, then frees the model. Idempotent."""
        if self._handle is None:
            return
        for ctx in list(self._contexts):
            ctx.close()
        self._close_pending = True
        self._free_if_unused()

    def _free_if_unused(self) -> None:
        # A context that is being garbage collected together with this model (in a cycle) may
        # still be open when close() runs from __del__: the free then waits for it.
        if self._close_pending and self._n_contexts == 0 and self._handle is not None:
            handle, self._handle = self._handle, None
            self._free_fn(handle)

    def _attach_context(self, ctx: Context) -> None:
        self._contexts.add(ctx)
        self._n_contexts += 1

    def _detach_context(self, ctx: Context) -> None:
        self._contexts.discard(ctx)
        self._n_contexts -= 1
        self._free_if_unused()

    def __repr__(self) -> str:
        if self.closed:
            return f"<libllm.Model {self.path!r} (closed)>"
        return f"<libllm.Model {self.path!r} arch={self.arch!r} n_params={self.n_params}>"

    # -- hyper-parameters ----------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        return int(_lib.lib.llm_model_n_vocab(self.handle))

    @property
    def n_embd(self) -> int:
        return int(_lib.lib.llm_model_n_embd(self.handle))

    @property
    def n_layer(self) -> int:
        return int(_lib.lib.llm_model_n_layer(self.handle))

    @property
    def n_head(self) -> int:
        return int(_lib.lib.llm_model_n_head(self.handle))

    @property
    def n_head_kv(self) -> int:
        return int(_lib.lib.llm_model_n_head_kv(self.handle))

    @property
    def n_ctx_train(self) -> int:
        return int(_lib.lib.llm_model_n_ctx_train(self.handle))

    @property
    def n_params(self) -> int:
        """Elements of all weights."""
        return int(_lib.lib.llm_model_n_params(self.handle))

    @property
    def size(self) -> int:
        """Bytes of all weights."""
        return int(_lib.lib.llm_model_size(self.handle))

    @property
    def arch(self) -> str:
        """general.architecture ("llama", "qwen2", ...)."""
        raw: bytes | None = _lib.lib.llm_model_arch(self.handle)
        return raw.decode("utf-8", errors="replace") if raw else ""

    # -- metadata ------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """The metadata value of ``key`` as text (arrays summarised), or None if absent."""
        handle = self.handle
        bkey = key.encode("utf-8")
        buf = ctypes.create_string_buffer(256)
        n = int(_lib.lib.llm_model_meta_str(handle, bkey, buf, len(buf)))
        if n == _lib.INT32_ERROR:
            return None
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = int(_lib.lib.llm_model_meta_str(handle, bkey, buf, len(buf)))
            if n < 0:
                raise error_for(_lib.STATUS_INTERNAL)
        return buf.raw[:n].decode("utf-8", errors="replace")

    def meta_keys(self) -> list[str]:
        """Every metadata key, in file order."""
        handle = self.handle
        keys = []
        for i in range(int(_lib.lib.llm_model_meta_count(handle))):
            raw: bytes | None = _lib.lib.llm_model_meta_key(handle, i)
            if raw is not None:
                keys.append(raw.decode("utf-8", errors="replace"))
        return keys

    @property
    def metadata(self) -> dict[str, str]:
        """All metadata as text: numbers printed, arrays summarised as "[n items]"."""
        result: dict[str, str] = {}
        for key in self.meta_keys():
            value = self.meta(key)
            if value is not None:
                result[key] = value
        return result

    # -- tensors -------------------------------------------------------------------------

    def tensors(self) -> list[TensorInfo]:
        """Every weight tensor, in file order."""
        handle = self.handle
        result = []
        for i in range(int(_lib.lib.llm_model_tensor_count(handle))):
            info = _lib.llm_tensor_info()
            info.size = ctypes.sizeof(_lib.llm_tensor_info)
            check(int(_lib.lib.llm_model_tensor_info(handle, i, ctypes.byref(info))))
            n_dims = int(info.n_dims)
            ne = [int(info.ne[d]) for d in range(n_dims)]
            type_id = int(info.type)
            result.append(
                TensorInfo(
                    name=(info.name or b"").decode("utf-8", errors="replace"),
                    type=type_id,
                    type_name=type_name(type_id),
                    shape=tuple(reversed(ne)),
                    n_bytes=int(info.n_bytes),
                )
            )
        return result

    def tensor_info(self, name: str) -> TensorInfo:
        """The TensorInfo of tensor ``name``; KeyError if there is none."""
        if self._tensor_index is None:
            self._tensor_index = {t.name: t for t in self.tensors()}
        try:
            return self._tensor_index[name]
        except KeyError:
            raise KeyError(f"the model has no tensor named {name!r}") from None

    def tensor(self, name: str) -> npt.NDArray[np.float32]:
        """Tensor ``name`` dequantized to a new float32 array of shape ``tensor_info(name).shape``
        (numpy order, the reverse of GGUF's ne)."""
        info = self.tensor_info(name)
        out = np.empty(info.shape, dtype=np.float32)
        ptr = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        check(int(_lib.lib.llm_model_tensor_to_f32(self.handle, name.encode(), ptr, out.size)))
        return out

    # -- vocabulary ----------------------------------------------------------------------

    @property
    def bos(self) -> int:
        """The beginning-of-sequence token, -1 if none."""
        return int(_lib.lib.llm_token_bos(self.handle))

    @property
    def eos(self) -> int:
        """The end-of-sequence token, -1 if none."""
        return int(_lib.lib.llm_token_eos(self.handle))

    @property
    def add_bos(self) -> bool:
        """Whether the tokenizer prepends BOS (tokenizer.ggml.add_bos_token)."""
        return bool(_lib.lib.llm_vocab_add_bos(self.handle))

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (EOS, EOT, ...)."""
        return bool(_lib.lib.llm_token_is_eog(self.handle, _lib.as_int32(token, "token")))

    def tokenize(self, text: str | bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Tokenizes UTF-8 text.

        Args:
            text: str, or bytes of UTF-8.
            add_bos: prepend BOS when the model asks for it.
            special: text like "<s>" becomes the control token rather than plain text.
        """
        handle = self.handle
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if len(data) >= 2**31:
            raise ValueError("text too long to tokenize (2 GiB or more)")
        capacity = len(data) + 8
        for _ in range(2):
            tokens = (ctypes.c_int32 * capacity)()
            n = int(
                _lib.lib.llm_tokenize(
                    handle, data, len(data), tokens, capacity, bool(add_bos), bool(special)
                )
            )
            if n == _lib.INT32_ERROR:
                raise InvalidArgumentError(
                    _lib.STATUS_INVALID_ARGUMENT, last_error_message() or "tokenization failed"
                )
            if n >= 0:
                return list(tokens[:n])
            capacity = -n
        raise InvalidArgumentError(_lib.STATUS_INVALID_ARGUMENT, "tokenization size unstable")

    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token as they appear in text (may be part of a UTF-8 character).

        special: also render control tokens (otherwise they give b"")."""
        handle = self.handle
        token = _lib.as_int32(token, "token")
        size = 32
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = int(_lib.lib.llm_token_to_piece(handle, token, buf, size, bool(special)))
            if n == _lib.INT32_ERROR:
                raise InvalidArgumentError(
                    _lib.STATUS_INVALID_ARGUMENT, last_error_message() or f"invalid token {token}"
                )
            if n >= 0:
                return buf.raw[:n]
            size = -n
        raise InvalidArgumentError(_lib.STATUS_INVALID_ARGUMENT, "token piece size unstable")

    def detokenize_bytes(
        self, ids: Sequence[int], remove_special: bool = False, unparse_special: bool = False
    ) -> bytes:
        """The text of a token sequence as bytes (see :meth:`detokenize`)."""
        handle = self.handle
        arr = _int32_array(ids)
        n_tokens = int(arr.size)
        ptr = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        size = max(64, 8 * n_tokens)
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = int(
                _lib.lib.llm_detokenize(
                    handle, ptr, n_tokens, buf, size, bool(remove_special), bool(unparse_special)
                )
            )
            if n == _lib.INT32_ERROR:
                raise InvalidArgumentError(
                    _lib.STATUS_INVALID_ARGUMENT, last_error_message() or "invalid token"
                )
            if n >= 0:
                return buf.raw[:n]
            size = -n
        raise InvalidArgumentError(_lib.STATUS_INVALID_ARGUMENT, "detokenize size unstable")

    def detokenize(
        self, ids: Sequence[int], remove_special: bool = False, unparse_special: bool = False
    ) -> str:
        """The text of a token sequence, as the tokenizer's reference decoder gives it (the
        leading space the tokenizer added is removed). Invalid UTF-8 becomes U+FFFD.

        Args:
            remove_special: drop a leading BOS / trailing EOS.
            unparse_special: render control tokens as text.
        """
        return self.detokenize_bytes(ids, remove_special, unparse_special).decode(
            "utf-8", errors="replace"
        )

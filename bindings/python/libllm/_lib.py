"""The raw ctypes layer: finds and loads the shared library, and declares its C ABI.

Every function of ``libllm/include/libllm.h`` is declared here once, under its C prototype,
with ``argtypes`` and ``restype``. Nothing above this module touches ctypes declarations.

The library is looked up in this order:

1. the environment variable ``LIBLLM_LIBRARY`` (a path to the library file);
2. the library file installed inside this package folder (``libllm.so``, ``libllm.dylib`` or
   ``llm.dll``), which is where the wheel puts it.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_float,
    c_int8,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from importlib import resources
from typing import Any

# The LLM_ABI_VERSION this package was written against; a library reporting another number
# is refused at import time.
ABI_VERSION = 1

# LLM_INT32_ERROR: what count-returning functions give on a hard error.
INT32_ERROR = -(2**31)

# llm_status
STATUS_OK = 0
STATUS_MEMORY_FULL = 1
STATUS_ABORTED = 2
STATUS_CANNOT_REWIND = 3
STATUS_INVALID_ARGUMENT = -1
STATUS_IO = -2
STATUS_BAD_FORMAT = -3
STATUS_UNSUPPORTED = -4
STATUS_OUT_OF_MEMORY = -5
STATUS_INTERNAL = -6

# llm_type (GGUF / ggml type ids)
TYPE_F32 = 0
TYPE_F16 = 1
TYPE_Q4_0 = 2
TYPE_Q8_0 = 8
TYPE_BF16 = 30

# llm_log_level
LOG_DEBUG = 0
LOG_INFO = 1
LOG_WARN = 2
LOG_ERROR = 3


# ------------------------------------------------------------------------------------------
# Locating and loading the library
# ------------------------------------------------------------------------------------------


def _library_names() -> list[str]:
    """File names the library may have inside the package folder, this platform's first."""
    if sys.platform == "win32":
        return ["llm.dll", "libllm.dll"]
    if sys.platform == "darwin":
        return ["libllm.dylib", "libllm.so"]
    return ["libllm.so"]


def _find_library() -> str:
    env = os.environ.get("LIBLLM_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise ImportError(f"libllm: LIBLLM_LIBRARY is set to {env!r}, which is not a file")
        return os.path.abspath(env)
    package = resources.files(__package__ or "libllm")
    for name in _library_names():
        candidate = package / name
        if candidate.is_file():
            return str(candidate)
    raise ImportError(
        "libllm: the shared library was not found: looked for "
        + " or ".join(_library_names())
        + f" in {package} (set LIBLLM_LIBRARY to the path of a built libllm library)"
    )


def _load(path: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(path)
    except OSError as exc:
        raise ImportError(f"libllm: cannot load the shared library {path!r}: {exc}") from exc


LIBRARY_PATH = _find_library()
lib = _load(LIBRARY_PATH)


# ------------------------------------------------------------------------------------------
# Handles: distinct pointer types, so a context passed where a model is expected fails loudly
# ------------------------------------------------------------------------------------------


class _Handle(c_void_p):
    """An opaque C handle. Only instances of the exact handle class are accepted as arguments
    (not integers, not None, not another kind of handle)."""

    @classmethod
    def from_param(cls, obj: Any) -> Any:
        if isinstance(obj, cls):
            return obj
        raise TypeError(f"expected a {cls.__name__} handle, got {type(obj).__name__}")


class llm_model_p(_Handle):
    """llm_model *"""


class llm_context_p(_Handle):
    """llm_context *"""


class llm_sampler_p(_Handle):
    """llm_sampler *"""


# ------------------------------------------------------------------------------------------
# Callback types and structures (field order and types exactly as libllm.h)
# ------------------------------------------------------------------------------------------

# typedef void (*llm_log_fn)(int32_t level, const char *message, void *user_data);
llm_log_fn = CFUNCTYPE(None, c_int32, c_char_p, c_void_p)

# typedef bool (*llm_progress_fn)(float progress, void *user_data);
llm_progress_fn = CFUNCTYPE(c_bool, c_float, c_void_p)


class llm_model_params(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("n_gpu_layers", c_int32),
        ("use_mmap", c_bool),
        ("vocab_only", c_bool),
        ("progress", llm_progress_fn),
        ("progress_user_data", c_void_p),
    ]


class llm_tensor_info(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("name", c_char_p),
        ("type", c_int32),
        ("n_dims", c_int32),
        ("ne", c_int64 * 4),
        ("n_bytes", c_uint64),
    ]


class llm_context_params(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("n_ctx", c_uint32),
        ("n_batch", c_uint32),
        ("n_ubatch", c_uint32),
        ("n_seq_max", c_uint32),
        ("n_threads", c_int32),
        ("seed", c_uint32),
        ("type_k", c_int32),
        ("type_v", c_int32),
        ("abort_callback", llm_progress_fn),
        ("abort_user_data", c_void_p),
        ("snapshot_interval", c_uint32),
        ("n_snapshots", c_uint32),
    ]


class llm_memory_breakdown(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("device", c_int32),
        ("weights_mapped", c_uint64),
        ("weights_resident", c_uint64),
        ("k", c_uint64),
        ("v", c_uint64),
        ("recurrent", c_uint64),
        ("compute", c_uint64),
    ]


class llm_context_stats(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("n_alloc", c_uint64),
        ("n_alloc_bytes", c_uint64),
        ("n_alloc_decode", c_uint64),
        ("n_decode", c_uint64),
        ("n_tokens_decoded", c_uint64),
        ("n_cells_used", c_uint32),
        ("n_cells_total", c_uint32),
    ]


class llm_batch(Structure):
    _fields_ = [
        ("n_tokens", c_int32),
        ("token", POINTER(c_int32)),
        ("pos", POINTER(c_int32)),
        ("n_seq_id", POINTER(c_int32)),
        ("seq_id", POINTER(POINTER(c_int32))),
        ("logits", POINTER(c_int8)),
    ]


_float_p = POINTER(c_float)
_int32_p = POINTER(c_int32)
_uint8_p = POINTER(c_uint8)


def _declare(name: str, argtypes: list[Any], restype: Any) -> None:
    try:
        fn = getattr(lib, name)
    except AttributeError as exc:
        raise ImportError(
            f"libllm: the library {LIBRARY_PATH!r} lacks the symbol {name}; "
            "it does not match this Python package"
        ) from exc
    fn.argtypes = argtypes
    fn.restype = restype


# ------------------------------------------------------------------------------------------
# Library
# ------------------------------------------------------------------------------------------

# uint32_t llm_abi_version(void);
_declare("llm_abi_version", [], c_uint32)

# Checked before anything else is declared: a library of another ABI is refused outright.
_abi = int(lib.llm_abi_version())
if _abi != ABI_VERSION:
    raise ImportError(
        f"libllm: the library {LIBRARY_PATH!r} has ABI version {_abi}, but this Python "
        f"package knows ABI version {ABI_VERSION}; install matching versions"
    )

# const char *llm_version(void);
_declare("llm_version", [], c_char_p)

# const char *llm_status_str(int32_t status);
_declare("llm_status_str", [c_int32], c_char_p)

# const char *llm_last_error(void);
_declare("llm_last_error", [], c_char_p)

# void llm_log_set(llm_log_fn fn, void *user_data);
_declare("llm_log_set", [llm_log_fn, c_void_p], None)

# ------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------

# void llm_model_default_params(llm_model_params *params);
_declare("llm_model_default_params", [POINTER(llm_model_params)], None)

# int32_t llm_model_load(const char *path, const llm_model_params *params, llm_model **out);
_declare("llm_model_load", [c_char_p, POINTER(llm_model_params), POINTER(llm_model_p)], c_int32)

# void llm_model_free(llm_model *model);
_declare("llm_model_free", [llm_model_p], None)

# int32_t llm_model_n_vocab(const llm_model *model);
_declare("llm_model_n_vocab", [llm_model_p], c_int32)

# int32_t llm_model_n_embd(const llm_model *model);
_declare("llm_model_n_embd", [llm_model_p], c_int32)

# int32_t llm_model_n_layer(const llm_model *model);
_declare("llm_model_n_layer", [llm_model_p], c_int32)

# int32_t llm_model_n_head(const llm_model *model);
_declare("llm_model_n_head", [llm_model_p], c_int32)

# int32_t llm_model_n_head_kv(const llm_model *model);
_declare("llm_model_n_head_kv", [llm_model_p], c_int32)

# int32_t llm_model_n_ctx_train(const llm_model *model);
_declare("llm_model_n_ctx_train", [llm_model_p], c_int32)

# uint64_t llm_model_n_params(const llm_model *model);
_declare("llm_model_n_params", [llm_model_p], c_uint64)

# uint64_t llm_model_size(const llm_model *model);
_declare("llm_model_size", [llm_model_p], c_uint64)

# const char *llm_model_arch(const llm_model *model);
_declare("llm_model_arch", [llm_model_p], c_char_p)

# int32_t llm_model_meta_str(const llm_model *model, const char *key, char *buf,
#                            int32_t buf_size);
_declare("llm_model_meta_str", [llm_model_p, c_char_p, c_char_p, c_int32], c_int32)

# int32_t llm_model_meta_count(const llm_model *model);
_declare("llm_model_meta_count", [llm_model_p], c_int32)

# const char *llm_model_meta_key(const llm_model *model, int32_t i);
_declare("llm_model_meta_key", [llm_model_p, c_int32], c_char_p)

# int32_t llm_model_tensor_count(const llm_model *model);
_declare("llm_model_tensor_count", [llm_model_p], c_int32)

# int32_t llm_model_tensor_info(const llm_model *model, int32_t i, llm_tensor_info *info);
_declare("llm_model_tensor_info", [llm_model_p, c_int32, POINTER(llm_tensor_info)], c_int32)

# int32_t llm_model_tensor_to_f32(const llm_model *model, const char *name, float *dst,
#                                 size_t n_dst);
_declare("llm_model_tensor_to_f32", [llm_model_p, c_char_p, _float_p, c_size_t], c_int32)

# ------------------------------------------------------------------------------------------
# Vocabulary
# ------------------------------------------------------------------------------------------

# llm_token llm_token_bos(const llm_model *model);
_declare("llm_token_bos", [llm_model_p], c_int32)

# llm_token llm_token_eos(const llm_model *model);
_declare("llm_token_eos", [llm_model_p], c_int32)

# bool llm_token_is_eog(const llm_model *model, llm_token token);
_declare("llm_token_is_eog", [llm_model_p, c_int32], c_bool)

# bool llm_vocab_add_bos(const llm_model *model);
_declare("llm_vocab_add_bos", [llm_model_p], c_bool)

# int32_t llm_tokenize(const llm_model *model, const char *text, int32_t text_len,
#                      llm_token *tokens, int32_t n_tokens_max, bool add_special,
#                      bool parse_special);
_declare(
    "llm_tokenize",
    [llm_model_p, c_char_p, c_int32, _int32_p, c_int32, c_bool, c_bool],
    c_int32,
)

# int32_t llm_token_to_piece(const llm_model *model, llm_token token, char *buf,
#                            int32_t buf_size, bool special);
_declare("llm_token_to_piece", [llm_model_p, c_int32, c_char_p, c_int32, c_bool], c_int32)

# int32_t llm_detokenize(const llm_model *model, const llm_token *tokens, int32_t n_tokens,
#                        char *buf, int32_t buf_size, bool remove_special,
#                        bool unparse_special);
_declare(
    "llm_detokenize",
    [llm_model_p, _int32_p, c_int32, c_char_p, c_int32, c_bool, c_bool],
    c_int32,
)

# ------------------------------------------------------------------------------------------
# Context
# ------------------------------------------------------------------------------------------

# void llm_context_default_params(llm_context_params *params);
_declare("llm_context_default_params", [POINTER(llm_context_params)], None)

# int32_t llm_context_create(llm_model *model, const llm_context_params *params,
#                            llm_context **out);
_declare(
    "llm_context_create",
    [llm_model_p, POINTER(llm_context_params), POINTER(llm_context_p)],
    c_int32,
)

# void llm_context_free(llm_context *ctx);
_declare("llm_context_free", [llm_context_p], None)

# const llm_model *llm_context_model(const llm_context *ctx);
_declare("llm_context_model", [llm_context_p], llm_model_p)

# uint32_t llm_context_n_ctx(const llm_context *ctx);
_declare("llm_context_n_ctx", [llm_context_p], c_uint32)

# uint32_t llm_context_n_batch(const llm_context *ctx);
_declare("llm_context_n_batch", [llm_context_p], c_uint32)

# uint32_t llm_context_n_ubatch(const llm_context *ctx);
_declare("llm_context_n_ubatch", [llm_context_p], c_uint32)

# uint32_t llm_context_n_seq_max(const llm_context *ctx);
_declare("llm_context_n_seq_max", [llm_context_p], c_uint32)

# int32_t llm_context_set_n_threads(llm_context *ctx, int32_t n_threads);
_declare("llm_context_set_n_threads", [llm_context_p, c_int32], c_int32)

# int32_t llm_context_get_stats(const llm_context *ctx, llm_context_stats *stats);
_declare("llm_context_get_stats", [llm_context_p, POINTER(llm_context_stats)], c_int32)

# ------------------------------------------------------------------------------------------
# Batches and decoding
# ------------------------------------------------------------------------------------------

# llm_batch *llm_batch_init(int32_t n_tokens_max, int32_t n_seq_max);
_declare("llm_batch_init", [c_int32, c_int32], POINTER(llm_batch))

# void llm_batch_free(llm_batch *batch);
_declare("llm_batch_free", [POINTER(llm_batch)], None)

# int32_t llm_decode(llm_context *ctx, const llm_batch *batch);
_declare("llm_decode", [llm_context_p, POINTER(llm_batch)], c_int32)

# int32_t llm_n_outputs(const llm_context *ctx);
_declare("llm_n_outputs", [llm_context_p], c_int32)

# float *llm_get_logits(llm_context *ctx);
_declare("llm_get_logits", [llm_context_p], _float_p)

# float *llm_get_logits_ith(llm_context *ctx, int32_t i);
_declare("llm_get_logits_ith", [llm_context_p, c_int32], _float_p)

# ------------------------------------------------------------------------------------------
# Memory (the KV cache)
# ------------------------------------------------------------------------------------------

# void llm_memory_clear(llm_context *ctx);
_declare("llm_memory_clear", [llm_context_p], None)

# int32_t llm_memory_seq_rm(llm_context *ctx, llm_seq_id seq, llm_pos p0, llm_pos p1);
_declare("llm_memory_seq_rm", [llm_context_p, c_int32, c_int32, c_int32], c_int32)

# int32_t llm_memory_seq_cp(llm_context *ctx, llm_seq_id src, llm_seq_id dst, llm_pos p0,
#                           llm_pos p1);
_declare("llm_memory_seq_cp", [llm_context_p, c_int32, c_int32, c_int32, c_int32], c_int32)

# int32_t llm_memory_seq_keep(llm_context *ctx, llm_seq_id seq);
_declare("llm_memory_seq_keep", [llm_context_p, c_int32], c_int32)

# int32_t llm_memory_seq_add(llm_context *ctx, llm_seq_id seq, llm_pos p0, llm_pos p1,
#                            llm_pos delta);
_declare("llm_memory_seq_add", [llm_context_p, c_int32, c_int32, c_int32, c_int32], c_int32)

# int32_t llm_memory_seq_div(llm_context *ctx, llm_seq_id seq, llm_pos p0, llm_pos p1,
#                            int32_t d);
_declare("llm_memory_seq_div", [llm_context_p, c_int32, c_int32, c_int32, c_int32], c_int32)

# llm_pos llm_memory_seq_pos_min(const llm_context *ctx, llm_seq_id seq);
_declare("llm_memory_seq_pos_min", [llm_context_p, c_int32], c_int32)

# llm_pos llm_memory_seq_pos_max(const llm_context *ctx, llm_seq_id seq);
_declare("llm_memory_seq_pos_max", [llm_context_p, c_int32], c_int32)

# ------------------------------------------------------------------------------------------
# Memory breakdown
# ------------------------------------------------------------------------------------------

# int32_t llm_memory_breakdown_get(const llm_context *ctx, llm_memory_breakdown *out,
#                                  int32_t n_max);
_declare(
    "llm_memory_breakdown_get",
    [llm_context_p, POINTER(llm_memory_breakdown), c_int32],
    c_int32,
)

# int32_t llm_memory_breakdown_estimate(const llm_model *model,
#                                       const llm_context_params *params,
#                                       llm_memory_breakdown *out, int32_t n_max);
_declare(
    "llm_memory_breakdown_estimate",
    [llm_model_p, POINTER(llm_context_params), POINTER(llm_memory_breakdown), c_int32],
    c_int32,
)

# ------------------------------------------------------------------------------------------
# State save / restore
# ------------------------------------------------------------------------------------------

# size_t llm_state_size(const llm_context *ctx);
_declare("llm_state_size", [llm_context_p], c_size_t)

# int32_t llm_state_save(const llm_context *ctx, uint8_t *dst, size_t size, size_t *written);
_declare("llm_state_save", [llm_context_p, _uint8_p, c_size_t, POINTER(c_size_t)], c_int32)

# int32_t llm_state_load(llm_context *ctx, const uint8_t *src, size_t size);
_declare("llm_state_load", [llm_context_p, _uint8_p, c_size_t], c_int32)

# size_t llm_state_seq_size(const llm_context *ctx, llm_seq_id seq);
_declare("llm_state_seq_size", [llm_context_p, c_int32], c_size_t)

# int32_t llm_state_seq_save(const llm_context *ctx, llm_seq_id seq, uint8_t *dst,
#                            size_t size, size_t *written);
_declare(
    "llm_state_seq_save",
    [llm_context_p, c_int32, _uint8_p, c_size_t, POINTER(c_size_t)],
    c_int32,
)

# int32_t llm_state_seq_load(llm_context *ctx, llm_seq_id seq, const uint8_t *src,
#                            size_t size);
_declare("llm_state_seq_load", [llm_context_p, c_int32, _uint8_p, c_size_t], c_int32)

# int32_t llm_state_save_file(const llm_context *ctx, const char *path);
_declare("llm_state_save_file", [llm_context_p, c_char_p], c_int32)

# int32_t llm_state_load_file(llm_context *ctx, const char *path);
_declare("llm_state_load_file", [llm_context_p, c_char_p], c_int32)

# int32_t llm_state_seq_save_file(const llm_context *ctx, llm_seq_id seq, const char *path);
_declare("llm_state_seq_save_file", [llm_context_p, c_int32, c_char_p], c_int32)

# int32_t llm_state_seq_load_file(llm_context *ctx, llm_seq_id seq, const char *path);
_declare("llm_state_seq_load_file", [llm_context_p, c_int32, c_char_p], c_int32)

# ------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------

# int32_t llm_sampler_chain_create(llm_sampler **out);
_declare("llm_sampler_chain_create", [POINTER(llm_sampler_p)], c_int32)

# void llm_sampler_free(llm_sampler *sampler);
_declare("llm_sampler_free", [llm_sampler_p], None)

# int32_t llm_sampler_add_penalties(llm_sampler *s, int32_t last_n, float repeat,
#                                   float frequency, float presence);
_declare("llm_sampler_add_penalties", [llm_sampler_p, c_int32, c_float, c_float, c_float], c_int32)

# int32_t llm_sampler_add_top_k(llm_sampler *s, int32_t k);
_declare("llm_sampler_add_top_k", [llm_sampler_p, c_int32], c_int32)

# int32_t llm_sampler_add_top_p(llm_sampler *s, float p, int32_t min_keep);
_declare("llm_sampler_add_top_p", [llm_sampler_p, c_float, c_int32], c_int32)

# int32_t llm_sampler_add_min_p(llm_sampler *s, float p, int32_t min_keep);
_declare("llm_sampler_add_min_p", [llm_sampler_p, c_float, c_int32], c_int32)

# int32_t llm_sampler_add_temp(llm_sampler *s, float temperature);
_declare("llm_sampler_add_temp", [llm_sampler_p, c_float], c_int32)

# int32_t llm_sampler_add_greedy(llm_sampler *s);
_declare("llm_sampler_add_greedy", [llm_sampler_p], c_int32)

# int32_t llm_sampler_add_dist(llm_sampler *s, uint32_t seed);
_declare("llm_sampler_add_dist", [llm_sampler_p, c_uint32], c_int32)

# int32_t llm_sampler_sample(llm_sampler *s, llm_context *ctx, int32_t idx, llm_token *out);
_declare("llm_sampler_sample", [llm_sampler_p, llm_context_p, c_int32, _int32_p], c_int32)

# int32_t llm_sampler_sample_logits(llm_sampler *s, const float *logits, int32_t n_vocab,
#                                   llm_token *out);
_declare("llm_sampler_sample_logits", [llm_sampler_p, _float_p, c_int32, _int32_p], c_int32)

# void llm_sampler_accept(llm_sampler *s, llm_token token);
_declare("llm_sampler_accept", [llm_sampler_p, c_int32], None)

# void llm_sampler_reset(llm_sampler *s);
_declare("llm_sampler_reset", [llm_sampler_p], None)


def version() -> str:
    """The loaded library's version string ("MAJOR.MINOR.PATCH")."""
    raw: bytes | None = lib.llm_version()
    return raw.decode("ascii", errors="replace") if raw else "unknown"


def as_int32(value: int, what: str) -> int:
    """``value`` as an int that fits int32_t, or ValueError naming ``what``."""
    value = int(value)
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"{what} {value} does not fit in int32")
    return value


def as_uint32(value: int, what: str) -> int:
    """``value`` as an int that fits uint32_t, or ValueError naming ``what``."""
    value = int(value)
    if not 0 <= value < 2**32:
        raise ValueError(f"{what} must be in [0, 2**32), got {value}")
    return value

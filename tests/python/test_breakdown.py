"""Memory breakdown: bytes computed independently from shapes and types (gguf reader) equal
what the library reports, and the estimate made before a context exists equals the breakdown
of the context created with the same parameters."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

# bytes per block and values per block of the cache types
_BLOCK = {"f32": (4, 1), "f16": (2, 1), "bf16": (2, 1), "q8_0": (34, 32), "q4_0": (18, 32)}


def _row_bytes(type_name: str, n: int) -> int:
    size, block = _BLOCK[type_name]
    return n // block * size


@pytest.mark.parametrize("use_mmap", [True, False])
@pytest.mark.parametrize("type_k,type_v", [("f16", "f16"), ("f32", "bf16")])
def test_breakdown_matches_shapes(lib, model_factory, use_mmap, type_k, type_v):
    case = model_factory("qwen2", "q8_0")
    reader = gguf.GGUFReader(case.path)
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    one_d = sum(int(np.prod(t.shape)) * 4 for t in reader.tensors if len(t.shape) == 1)
    field = reader.fields
    n_layer = int(field["qwen2.block_count"].parts[-1][0])
    n_head = int(field["qwen2.attention.head_count"].parts[-1][0])
    n_head_kv = int(field["qwen2.attention.head_count_kv"].parts[-1][0])
    n_embd = int(field["qwen2.embedding_length"].parts[-1][0])
    head_dim = n_embd // n_head
    n_ctx = 96

    with lib.Model(case.path, use_mmap=use_mmap) as model:
        params = {"n_ctx": n_ctx, "n_batch": 64, "n_ubatch": 16, "n_seq_max": 3,
                  "n_threads": 2, "type_k": type_k, "type_v": type_v}
        estimate = lib.Context.estimate_memory(model, **params)
        with lib.Context(model, **params) as ctx:
            got = ctx.memory_breakdown()
            assert got == estimate
            assert got["device"] == -1
            assert got["k"] == n_layer * n_ctx * n_head_kv * _row_bytes(type_k, head_dim)
            assert got["v"] == n_layer * n_ctx * n_head_kv * _row_bytes(type_v, head_dim)
            assert got["recurrent"] == 0
            if use_mmap:
                assert got["weights_mapped"] == tensor_bytes
                assert got["weights_resident"] == one_d      # the f32 copies of norms/biases
            else:
                assert got["weights_mapped"] == 0
                assert got["weights_resident"] == tensor_bytes + one_d
            assert got["compute"] > 0
            # more output rows grow the logits buffer by exactly their size
            ctx.decode_tokens(list(range(3, 40)), logits="all")
            grown = ctx.memory_breakdown()
            assert grown["compute"] - got["compute"] == (37 - 3) * model.n_vocab * 4


def test_estimate_rejects_bad_cache_type(lib, model_factory):
    case = model_factory("qwen2", "f32")          # heads of 16: no room for 32-value blocks
    with lib.Model(case.path) as model, pytest.raises(lib.LibLLMError):
        lib.Context.estimate_memory(model, n_ctx=64, type_k="q8_0")

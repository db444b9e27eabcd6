#!/usr/bin/env python3
"""Writes a few small, valid GGUF v3 files into DIR as a seed corpus for fuzz_gguf.

Usage: make_seed_corpus.py DIR

Needs the `gguf` package (pip install gguf) and numpy. The files cover every metadata value
type, arrays of numbers and strings, custom alignment, and F32/F16/Q8_0/Q4_0 tensors, while
staying small (a few KiB) so the fuzzer mutates them quickly.
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT


def write(path, build, arch="llama"):
    w = gguf.GGUFWriter(path, arch)
    build(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def add_quantized(w, name, values, qtype):
    data = gguf.quants.quantize(values.astype(np.float32), qtype)
    w.add_tensor(name, data, raw_dtype=qtype)


def scalars(w):
    w.add_name("seed scalars")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -5)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 1e-5)
    w.add_bool("test.bool", True)
    w.add_uint64("test.u64", 2**40 + 3)
    w.add_int64("test.i64", -(2**40))
    w.add_float64("test.f64", 3.14159)
    w.add_string("test.str", "h\u00e9llo")
    w.add_array("test.arr_i32", [1, -2, 3])
    w.add_array("test.arr_f32", [0.5, -1.25])
    w.add_array("test.arr_str", ["a", "", "bc"])
    w.add_key_value("test.arr_bool", [True, False], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.BOOL)
    w.add_key_value("test.arr_u8", [1, 2, 255], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.UINT8)
    w.add_tensor("tok_embd.weight", np.arange(12, dtype=np.float32).reshape(3, 4))


def quantized(w):
    rng = np.random.default_rng(0)
    w.add_custom_alignment(64)
    w.add_block_count(1)
    w.add_embedding_length(64)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    w.add_tensor("blk.0.attn_norm.weight", rng.standard_normal(64).astype(np.float16))
    add_quantized(w, "blk.0.attn_q.weight", rng.standard_normal((2, 64)), QT.Q8_0)
    add_quantized(w, "blk.0.attn_k.weight", rng.standard_normal((2, 64)), QT.Q4_0)


def tokenizer(w):
    tokens = ["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(40)] + ["\u2581the"]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([float(-i) for i in range(len(tokens))])
    w.add_token_types([2, 3, 3] + [1] * (len(tokens) - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)


def metadata_only(w):
    w.add_context_length(2048)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)


def four_dims(w):
    w.add_custom_alignment(16)
    w.add_tensor("conv.weight", np.zeros((2, 1, 3, 2), dtype=np.float16))
    add_quantized(w, "proj.weight", np.linspace(-1, 1, 32 * 3), QT.Q4_0)


SEEDS = {
    "scalars.gguf": scalars,
    "quantized.gguf": quantized,
    "tokenizer.gguf": tokenizer,
    "metadata_only.gguf": metadata_only,
    "four_dims.gguf": four_dims,
}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_seed_corpus.py DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, build in SEEDS.items():
        path = os.path.join(out, name)
        write(path, build)
        print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()

"""Writes benchmark-sized hybrid GGUF files (random weights) with the test fixtures' writers:
a Jamba (Mamba + attention, MoE every other layer) and a Granite 4 hybrid (Mamba2 +
attention, MoE + shared expert), each about 150M parameters, in the given weight types.

    python tests/bench/make_hybrid_models.py --out /tmp/libllm-hybrid-bench --types f32 q8_0

Prints the paths. Then: tests/bench/recurrent_bench.py --hybrid PATH (state bytes) and
tests/bench/compare_llamacpp.py PATH (speed vs llama.cpp on the same file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

JAMBA_SHAPE = {
    "vocab_size": 32000,
    "hidden_size": 768,
    "num_attention_heads": 12,
    "num_key_value_heads": 4,
    "intermediate_size": 1536,
    "num_hidden_layers": 12,
    "attn_layer_period": 4,
    "attn_layer_offset": 2,
    "expert_layer_period": 2,
    "expert_layer_offset": 1,
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "mamba_d_state": 16,
    "mamba_d_conv": 4,
    "mamba_expand": 2,
    "mamba_dt_rank": 48,
}

GRANITE_SHAPE = {
    "vocab_size": 32000,
    "hidden_size": 768,
    "num_attention_heads": 12,
    "num_key_value_heads": 4,
    "intermediate_size": 512,
    "shared_intermediate_size": 1024,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 12,
    "layer_types": ["mamba"] * 3 + ["attention"] + ["mamba"] * 5 + ["attention"] + ["mamba"] * 2,
    "mamba_n_heads": 24,
    "mamba_d_head": 64,
    "mamba_n_groups": 1,
    "mamba_d_state": 128,
    "mamba_d_conv": 4,
    "mamba_expand": 2,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/libllm-hybrid-bench"))
    ap.add_argument("--types", nargs="+", default=["q8_0"])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import modelgen_granite as mgr
    import modelgen_jamba as mj

    jamba = mj.make_jamba(seed=args.seed, **JAMBA_SHAPE)
    for t in args.types:
        print(mj.write_gguf_jamba(jamba, args.out / f"jamba-150m-shape-{t}.gguf", t))
    del jamba
    granite = mgr.make_granite(seed=args.seed, rope=False, **GRANITE_SHAPE)
    for t in args.types:
        print(mgr.write_gguf_granite(granite, args.out / f"granitehybrid-150m-shape-{t}.gguf", t))


if __name__ == "__main__":
    main()

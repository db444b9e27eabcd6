#!/usr/bin/env python3
"""Train libllm's bundled default model (bindings/python/libllm/models/default.gguf).

A tiny Llama-architecture code model trained from scratch on the Python standard library's own
source, so it can be rebuilt on any machine with no download. Not run in CI.

    python bindings/python/tools/train_default_model.py \
        --out bindings/python/libllm/models/default.gguf --work /tmp/default-model

Steps (all seeded, all inputs in a deterministic order):
  1. corpus: every *.py under sysconfig.get_paths()["stdlib"], sorted by relative path, minus
     site-packages and the test suites (test/, tests/ folders); files whose sorted index is
     a multiple of --val-every are held out for validation; the rest is capped at --max-bytes;
  2. tokenizer: SentencePiece BPE, vocab --vocab, byte_fallback, identity normalization, no
     dummy prefix, whitespace kept and whitespace-only pieces allowed (so runs of indentation
     spaces become single pieces: ▁▁▁▁, ▁▁▁▁▁▁▁▁, ...);
  3. model: transformers LlamaForCausalLM (RMSNorm, rotary, SwiGLU, GQA, tied embeddings),
     trained with AdamW and a warmup + cosine schedule on random 256-token windows of the
     token stream (each file is <s> + its tokens);
  4. export: GGUF as llama.cpp's convert_hf_to_gguf.py writes a Llama checkpoint with an SPM
     vocab (q/k rows permuted for interleaved RoPE), 2-D weights Q8_0, 1-D weights F32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# 1. corpus
# ---------------------------------------------------------------------------------------------

EXCLUDED_DIRS = {"site-packages", "test", "tests", "__pycache__"}


def corpus_files() -> list[tuple[str, Path]]:
    """(relative path, path) of every stdlib .py file used, sorted by relative path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if EXCLUDED_DIRS & set(rel.parts[:-1]) or p.is_symlink():
            continue
        out.append((rel.as_posix(), p))
    out.sort(key=lambda x: x[0])
    return out


def read_text(p: Path) -> str | None:
    try:
        txt = p.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if "\x00" in txt or not txt.strip():
        return None
    return txt.replace("\r\n", "\n")


def gather_corpus(max_bytes: int, val_every: int) -> tuple[list[str], list[str], list[str]]:
    """(train texts, val texts, val relative paths)."""
    train, val, val_names = [], [], []
    n = 0
    for i, (rel, p) in enumerate(corpus_files()):
        txt = read_text(p)
        if txt is None:
            continue
        if i % val_every == 0:
            val.append(txt)
            val_names.append(rel)
            continue
        if n >= max_bytes:
            continue
        train.append(txt)
        n += len(txt.encode("utf-8"))
    return train, val, val_names


# ---------------------------------------------------------------------------------------------
# 2. tokenizer
# ---------------------------------------------------------------------------------------------


def train_tokenizer(train: list[str], prefix: Path, vocab: int, seed: int) -> Path:
    import sentencepiece as spm

    lines = [ln for txt in train for ln in txt.split("\n") if ln.strip()]
    # SentencePiece samples/shuffles with its own RNG; fix it for reproducibility.
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(prefix),
        vocab_size=vocab,
        model_type="bpe",
        byte_fallback=True,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        split_by_whitespace=True,
        split_by_unicode_script=True,
        character_coverage=1.0,
        max_sentence_length=4096,
        input_sentence_size=0,  # use every line
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=2,
        minloglevel=2,
    )
    return Path(str(prefix) + ".model")


def sp_vocab(model_path: Path):
    """(tokens, scores, types) exactly as convert_hf_to_gguf.py's _create_vocab_sentencepiece."""
    import gguf
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    T = gguf.TokenType
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    proto = pb.ModelProto()
    proto.ParseFromString(model_path.read_bytes())
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            t = T.UNKNOWN
        elif sp.is_control(i):
            t = T.CONTROL
        elif sp.is_unused(i):
            t = T.UNUSED
        elif sp.is_byte(i):
            t = T.BYTE
        elif proto.pieces[i].type == pb.ModelProto.SentencePiece.USER_DEFINED:
            t = T.USER_DEFINED
        else:
            t = T.NORMAL
        types.append(int(t))
    return tokens, scores, types


def encode_docs(sp, texts: list[str]) -> np.ndarray:
    ids: list[int] = []
    for txt in texts:
        ids.append(sp.bos_id())
        ids.extend(sp.encode(txt))
    return np.asarray(ids, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# 3. model
# ---------------------------------------------------------------------------------------------


def make_config(a):
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=a.vocab,
        hidden_size=a.dim,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        intermediate_size=a.ff,
        max_position_embeddings=a.ctx,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        attention_bias=False,
        mlp_bias=False,
    )
    return cfg


def train_model(a, train_ids: np.ndarray, val_ids: np.ndarray, log):
    import torch
    import transformers

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    cfg = make_config(a)
    cfg._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"[model] {n_params:,} parameters (tied embeddings)")

    decay = [p for n, p in model.named_parameters() if p.ndim == 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=a.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )

    def lr_at(step: int) -> float:
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        t = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.min_lr + 0.5 * (a.lr - a.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))

    rng = np.random.default_rng(a.seed)
    T = a.ctx
    train_t = torch.from_numpy(train_ids)
    # fixed validation windows (non-overlapping, from the held-out files)
    n_val = min(a.val_windows, (len(val_ids) - 1) // T)
    val_x = torch.stack([torch.from_numpy(val_ids[i * T : (i + 1) * T]) for i in range(n_val)])
    val_y = torch.stack(
        [torch.from_numpy(val_ids[i * T + 1 : (i + 1) * T + 1]) for i in range(n_val)]
    )

    def val_loss() -> float:
        model.eval()
        tot = 0.0
        with torch.no_grad():
            for i in range(0, n_val, 16):
                out = model(input_ids=val_x[i : i + 16], use_cache=False)
                tot += torch.nn.functional.cross_entropy(
                    out.logits.reshape(-1, cfg.vocab_size).float(),
                    val_y[i : i + 16].reshape(-1),
                    reduction="sum",
                ).item()
        model.train()
        return tot / (n_val * T)

    history = []
    model.train()
    t0 = time.time()
    ema = None
    for step in range(a.steps):
        starts = rng.integers(0, len(train_ids) - T - 1, size=a.batch)
        x = torch.stack([train_t[s : s + T] for s in starts])
        y = torch.stack([train_t[s + 1 : s + T + 1] for s in starts])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        logits = model(input_ids=x, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        if step % a.log_every == 0 or step == a.steps - 1:
            el = time.time() - t0
            rec = {
                "step": step,
                "train_loss": round(ema, 4),
                "lr": lr_at(step),
                "elapsed_s": round(el, 1),
            }
            if step % a.eval_every == 0 or step == a.steps - 1:
                rec["val_loss"] = round(val_loss(), 4)
            history.append(rec)
            log(json.dumps(rec))
    model.eval()
    return model, history, n_params


# ---------------------------------------------------------------------------------------------
# 4. GGUF export
# ---------------------------------------------------------------------------------------------

_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    _, _, layer, rest = hf.split(".", 3)
    return f"blk.{layer}.{_LAYER_MAP[rest]}"


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's LlamaModel.permute: HF rotate-half rows -> interleaved RoPE rows, per head."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def export_gguf(model, sp_model: Path, out: Path, name: str) -> None:
    import gguf
    import torch

    c = model.config
    head_dim = c.hidden_size // c.num_attention_heads
    tokens, scores, types = sp_vocab(sp_model)
    assert len(tokens) == c.vocab_size
    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(name)
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0))
    w.add_vocab_size(c.vocab_size)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    w.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    w.add_rope_dimension_count(head_dim)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)  # the tokenizer was trained with add_dummy_prefix=False

    for hf, t in model.state_dict().items():
        if hf == "lm_head.weight" and c.tie_word_embeddings:
            continue  # tied: no output.weight, as the converter writes it
        arr = t.detach().to(torch.float32).numpy().copy()
        if hf.endswith("q_proj.weight"):
            arr = permute_qk(arr, c.num_attention_heads)
        elif hf.endswith("k_proj.weight"):
            arr = permute_qk(arr, c.num_key_value_heads)
        if arr.ndim == 2:
            assert arr.shape[1] % 32 == 0, (hf, arr.shape)
            data = gguf.quants.quantize(np.ascontiguousarray(arr), gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(gguf_name(hf), data, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gguf_name(hf), np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument(
        "--work",
        default=Path("/tmp/default-model"),
        type=Path,
        help="scratch folder: tokenizer, checkpoint, training log",
    )
    ap.add_argument("--name", default="libllm-default-stdlib-code")
    ap.add_argument("--seed", type=int, default=20240606)
    ap.add_argument("--max-bytes", type=int, default=24_000_000)
    ap.add_argument("--val-every", type=int, default=40)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=704)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=550)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--val-windows", type=int, default=64)
    a = ap.parse_args()

    import sentencepiece as spm
    import torch

    a.work.mkdir(parents=True, exist_ok=True)
    log_path = a.work / "train.log"

    def log(msg: str) -> None:
        print(msg, flush=True)
        with open(log_path, "a", encoding="utf-8") as logf:
            logf.write(msg + "\n")

    log(f"[args] {json.dumps({k: str(v) for k, v in vars(a).items()})}")
    log(
        f"[env] python {sys.version.split()[0]} torch {torch.__version__} "
        f"sentencepiece {spm.__version__} stdlib {sysconfig.get_paths()['stdlib']}"
    )
    t0 = time.time()
    train, val, val_names = gather_corpus(a.max_bytes, a.val_every)
    nb = sum(len(t.encode()) for t in train)
    log(
        f"[corpus] train {len(train)} files {nb / 1e6:.2f} MB; val {len(val)} files "
        f"{sum(len(t.encode()) for t in val) / 1e6:.2f} MB"
    )
    (a.work / "val_files.txt").write_text("\n".join(val_names) + "\n")

    sp_model = train_tokenizer(train, a.work / "tokenizer", a.vocab, a.seed)
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    train_ids = encode_docs(sp, train)
    val_ids = encode_docs(sp, val)
    log(
        f"[tokenizer] {sp_model} in {time.time() - t0:.0f}s; train {len(train_ids):,} tokens "
        f"({nb / len(train_ids):.2f} bytes/token), val {len(val_ids):,} tokens"
    )

    model, history, n_params = train_model(a, train_ids, val_ids, log)
    model.save_pretrained(a.work / "hf")
    (a.work / "history.json").write_text(json.dumps(history, indent=1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    export_gguf(model, sp_model, a.out, a.name)
    log(
        f"[done] {a.out} {a.out.stat().st_size / 1e6:.2f} MB, {n_params:,} params, "
        f"{a.steps} steps, total {time.time() - t0:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

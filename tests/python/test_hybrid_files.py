"""Malformed hybrid (jamba) files fail to load with a clear status and message, never a crash.

Each case writes the fixture of modelgen_jamba with one thing wrong (the writer's calls
patched): the per-layer KV head list, the expert counts, an expert stack's shape, a missing
Mamba-layer norm. The good file keeps loading afterwards.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest


@pytest.fixture(scope="module")
def jamba_hf():
    import modelgen_jamba as mj

    return mj.make_jamba(seed=31)


def write_broken(tmp_path, hf, monkeypatch, *, kv_heads=None, used=None, tensor=None):
    """The fixture file with head_count_kv replaced by kv_heads(list) -> list, expert_used_count
    by used, and tensor(name, array) -> array | None (None drops the tensor)."""
    import modelgen_jamba as mj

    if kv_heads is not None:
        orig = gguf.GGUFWriter.add_head_count_kv
        monkeypatch.setattr(gguf.GGUFWriter, "add_head_count_kv",
                            lambda self, v: orig(self, kv_heads(list(v))))
    if used is not None:
        orig_used = gguf.GGUFWriter.add_expert_used_count
        monkeypatch.setattr(gguf.GGUFWriter, "add_expert_used_count",
                            lambda self, v: orig_used(self, used))
    if tensor is not None:
        orig_add = gguf.GGUFWriter.add_tensor

        def add(self, name, data, *args, **kw):
            new = tensor(name, data)
            if new is not None:
                orig_add(self, name, new, *args, **kw)

        monkeypatch.setattr(gguf.GGUFWriter, "add_tensor", add)
    path = mj.write_gguf_jamba(hf, tmp_path / "broken.gguf", "f32")
    monkeypatch.undo()
    return str(path)


def kv_uneven(v):
    attn = [i for i, h in enumerate(v) if h]
    v[attn[-1]] = v[attn[0]] * 2
    return v


CASES = {
    "short kv list": (dict(kv_heads=lambda v: v[:-1]), "FormatError", "entries for"),
    "uneven kv heads": (dict(kv_heads=kv_uneven), "UnsupportedError", "one KV head count"),
    "kv heads not dividing": (dict(kv_heads=lambda v: [3 if h else 0 for h in v]),
                              "FormatError", "KV heads"),
    "too many experts used": (dict(used=99), "FormatError", "expert counts"),
    "expert stack short": (
        dict(tensor=lambda n, a: a[:-1] if n.endswith("ffn_up_exps.weight") else a),
        "FormatError", "ffn_up_exps.weight' has shape"),
    "missing dt norm": (
        dict(tensor=lambda n, a: None if n.endswith("ssm_dt_norm.weight") else a),
        "FormatError", "missing tensor 'blk.*ssm_dt_norm"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_jamba_file_is_refused(lib, jamba_hf, tmp_path, monkeypatch, case):
    patch, err, msg = CASES[case]
    path = write_broken(tmp_path, jamba_hf, monkeypatch, **patch)
    with pytest.raises(getattr(lib, err), match=msg.replace("*", r"\d+\.")):
        lib.Model(path)


def test_good_file_still_loads(lib, jamba_hf, tmp_path):
    import modelgen_jamba as mj

    path = mj.write_gguf_jamba(jamba_hf, tmp_path / "good.gguf", "f32")
    with lib.Model(str(path)) as model:
        with lib.Context(model, n_ctx=64) as ctx:
            ctx.decode_tokens([1, 2, 3])
            assert np.isfinite(np.array(ctx.logits(-1))).all()

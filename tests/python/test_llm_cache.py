"""LLM-level cache use: a prompt extending the previous one decodes only its new tokens, and
context shift lets generation run past n_ctx."""
from __future__ import annotations


def test_prompt_extension_reuses_the_cache(lib, model_factory):
    case = model_factory("llama", "q8_0")
    with lib.LLM(case.path, n_ctx=256, seed=1) as llm:
        first = llm.generate("hello world", max_tokens=8, temperature=0)
        prompt2 = "hello world" + first + " again"
        second = llm.generate(prompt2, max_tokens=8, temperature=0)
        stats = llm.last_stats
        assert stats.n_prompt_reused >= len(llm.tokenize("hello world")) - 1
        assert stats.n_prompt_reused < stats.n_prompt_tokens
    with lib.LLM(case.path, n_ctx=256, seed=1) as fresh:
        assert fresh.generate(prompt2, max_tokens=8, temperature=0) == second
        # a shorter, different prompt after a longer one drops the stale tail
        other = fresh.generate("world", max_tokens=8, temperature=0)
    with lib.LLM(case.path, n_ctx=256, seed=1) as fresh2:
        assert fresh2.generate("world", max_tokens=8, temperature=0) == other


def test_context_shift_generates_past_n_ctx(lib, model_factory):
    case = model_factory("qwen2", "f32")
    with lib.LLM(case.path, n_ctx=48, seed=1) as llm:
        llm.generate("hello world", max_tokens=200, temperature=0)
        n_prompt = llm.last_stats.n_prompt_tokens
        plain = llm.last_stats.n_generated
        assert plain <= 48 - n_prompt + 1
        llm.generate("hello world", max_tokens=200, temperature=0, context_shift=True, n_keep=2)
        shifted = llm.last_stats.n_generated
        ctx = llm.context
        assert ctx.seq_pos_max(0) < 48
    # the plain run stopped at the context's end, the shifted one went on (or met an
    # end-of-generation token past the point where the plain one had to stop)
    assert shifted > plain or shifted == 200

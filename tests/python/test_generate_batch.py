"""LLM.generate_batch / stream_batch and BatchGenerator: continuous batching over one context,
shared prompt prefixes, waiting when the cache is full, results independent of scheduling."""

from __future__ import annotations

from typing import Any

import pytest
from modelgen import random_prompt

PROMPTS = [
    "hello world",
    "hello there, how are you",
    "the cat sat on the mat",
    "hello world and more",
    "zebra",
    "the cat sat on the hat",
    "hello",
]


@pytest.fixture(scope="module")
def path(model_factory: Any) -> str:
    return str(model_factory("llama", "q8_0").path)


def test_greedy_matches_generate(lib: Any, path: str) -> None:
    with lib.LLM(path, n_ctx=256, seed=3) as one:
        refs = [one.generate(p, max_tokens=12, temperature=0, seed=3 + i)
                for i, p in enumerate(PROMPTS)]
    with lib.LLM(path, n_ctx=256, n_seq_max=4, seed=3) as llm:
        out = llm.generate_batch(PROMPTS, max_tokens=12, temperature=0)
        stats = llm.last_batch_stats
        assert out == refs
        assert stats.n_prompts == len(PROMPTS) and stats.max_active == 4
        assert stats.n_generated > 0 and stats.n_decode < stats.n_generated
        assert stats.finish_reasons == ["length"] * len(PROMPTS)
        assert stats.n_prompt_reused + stats.n_prompt_shared > 0   # "hello ..." prefixes
        # a stop string cuts each output exactly as generate does
        stop = [refs[0][3:6]]
        cut = llm.generate_batch(PROMPTS, max_tokens=12, temperature=0, stop=stop)
        assert cut[0] == refs[0][:3]
        assert llm.last_batch_stats.finish_reasons[0] == "stop"
        # the LLM keeps working for single generations afterwards (sequence 0 reused)
        assert llm.generate(PROMPTS[1], max_tokens=12, temperature=0) == refs[1]
    with lib.LLM(path, n_ctx=256, seed=3) as one:
        assert cut == [one.generate(p, max_tokens=12, temperature=0, stop=stop)
                       for p in PROMPTS]


def test_shared_prefix_is_decoded_once(lib: Any, path: str) -> None:
    prefix = random_prompt(24, 11)
    suffixes = [random_prompt(n + 1, 20 + n)[1:] for n in (3, 6, 1, 9)]
    prompts = [prefix + s for s in suffixes]
    expect = len(prefix) + sum(len(s) for s in suffixes)
    with lib.Model(path) as model, lib.Context(model, n_ctx=256, n_seq_max=4) as ctx:
        held: list[list[int]] = [[] for _ in range(4)]
        gen = lib.BatchGenerator(
            ctx, prompts, held, lambda i: lib.Sampler(temperature=0), n_slots=4, max_tokens=6
        )
        gen.step()                              # the whole prefill fits one n_batch
        assert gen.n_pending_prompt_tokens == 0
        assert set(gen.states().values()) == {"generate"}
        assert ctx.stats()["n_cells_used"] == expect
        assert ctx.stats()["n_tokens_decoded"] == expect
        assert gen.stats.n_prompt_decoded == expect
        assert gen.stats.n_prompt_shared == 3 * len(prefix)
        assert [h[: len(prefix)] for h in held] == [prefix] * 4
        for _ in gen:
            pass
        assert gen.done
        assert [len(h) for h in held] == [len(p) + 5 for p in prompts]
    # through the LLM: the first sampled token is never decoded with max_tokens=1
    with lib.LLM(path, n_ctx=256, n_seq_max=4, seed=1) as llm:
        llm.generate_batch(prompts, max_tokens=1, temperature=0)
        assert llm.context.stats()["n_cells_used"] == expect
        assert llm.last_batch_stats.n_prompt_decoded == expect


def test_later_prompts_share_with_cached_sequences(lib: Any, path: str) -> None:
    a, b = random_prompt(30, 5), random_prompt(10, 6)
    c = a + [7, 8, 9]
    with lib.LLM(path, n_ctx=256, n_seq_max=2, seed=2) as llm:
        out = llm.generate_batch([a, b, c], max_tokens=4, temperature=0)
        stats = llm.last_batch_stats
        # c joined after a ended and took a's cells (a's whole prompt) by seq_cp
        assert stats.n_prompt_reused >= len(a)
        assert stats.n_prompt_decoded == len(a) + len(b) - 1 + 3   # BOS is shared too
        # a second call extending the first one's prompts reuses what the cache still holds
        again = llm.generate_batch([c + [10]], max_tokens=4, temperature=0)
        assert llm.last_batch_stats.n_prompt_reused == len(c)
    with lib.LLM(path, n_ctx=256, seed=2) as one:
        assert out == [one.generate_batch([p], max_tokens=4, temperature=0)[0] for p in (a, b, c)]
        assert again == one.generate_batch([c + [10]], max_tokens=4, temperature=0)


def test_more_prompts_than_slots_all_complete(lib: Any, path: str) -> None:
    prompts = [random_prompt(5 + i % 4, 100 + i) for i in range(11)]
    with lib.LLM(path, n_ctx=256, n_seq_max=3, seed=9) as llm:
        out = llm.generate_batch(prompts, max_tokens=8, temperature=0)
        assert llm.last_batch_stats.max_active == 3
        assert all(r in ("stop", "length") for r in llm.last_batch_stats.finish_reasons)
    with lib.LLM(path, n_ctx=256, seed=9) as one:
        assert out == [one.generate_batch([p], max_tokens=8, temperature=0)[0] for p in prompts]


def test_sampled_results_reproducible_and_independent_of_slots(lib: Any, path: str) -> None:
    results = []
    for n_seq_max in (1, 3, 8):
        with lib.LLM(path, n_ctx=256, n_seq_max=n_seq_max, seed=7) as llm:
            results.append(llm.generate_batch(PROMPTS, max_tokens=10, temperature=0.9))
            if n_seq_max == 3:
                assert llm.generate_batch(PROMPTS, max_tokens=10, temperature=0.9) == results[-1]
                other = llm.generate_batch(PROMPTS, max_tokens=10, temperature=0.9, seed=8)
                assert other != results[-1]
                # each prompt's result is generate()'s with the seed seed + index
                assert llm.generate(PROMPTS[2], max_tokens=10, temperature=0.9, seed=9) == (
                    results[-1][2]
                )
    assert results[0] == results[1] == results[2]


def test_full_cache_waits_instead_of_failing(lib: Any, path: str) -> None:
    # 8 prompts of 12 tokens generating 30 each need ~340 cells; the cache has 56
    prompts = [random_prompt(12, s) for s in range(7)] + [random_prompt(12, 1)[:8] + [5, 6]]
    with lib.LLM(path, n_ctx=56, n_seq_max=4, n_batch=16, seed=5) as llm:
        out = llm.generate_batch(prompts, max_tokens=30, temperature=0)
        stats = llm.last_batch_stats
        assert stats.n_preempted + stats.n_requeued > 0
        assert llm.context.stats()["n_cells_used"] <= 56
    with lib.LLM(path, n_ctx=56, seed=5) as one:
        assert out == [one.generate_batch([p], max_tokens=30, temperature=0)[0] for p in prompts]


def test_context_end_and_bad_requests(lib: Any, path: str) -> None:
    with lib.LLM(path, n_ctx=32, n_seq_max=2, seed=1) as llm:
        prompts = [random_prompt(20, 1), random_prompt(20, 2)]
        out = llm.generate_batch(prompts, max_tokens=-1, temperature=0)
        assert len(out) == 2
        with lib.LLM(path, n_ctx=32, seed=1) as one:
            assert out == [one.generate_batch([p], max_tokens=-1, temperature=0)[0]
                           for p in prompts]
        with pytest.raises(ValueError, match="prompt 1 is 33 tokens"):
            llm.generate_batch([[1, 5], random_prompt(33, 3)], max_tokens=2)
        with pytest.raises(ValueError, match="outside the vocabulary"):
            llm.generate_batch([[1, 10**6]], max_tokens=2)
        with pytest.raises(TypeError):
            llm.generate_batch("one string", max_tokens=2)
        assert llm.generate_batch([], max_tokens=2) == []


def test_stream_batch_pieces_and_interruption(lib: Any, path: str) -> None:
    with lib.LLM(path, n_ctx=256, n_seq_max=4, seed=4) as llm:
        whole = llm.generate_batch(PROMPTS[:4], max_tokens=10, temperature=0)
        parts = ["", "", "", ""]
        for i, text in llm.stream_batch(PROMPTS[:4], max_tokens=10, temperature=0):
            assert text
            parts[i] += text
        assert parts == whole
        stream = llm.stream_batch(PROMPTS[:4], max_tokens=10, temperature=0)
        next(stream)
        llm.generate(PROMPTS[0], max_tokens=3, temperature=0)
        with pytest.raises(RuntimeError):
            list(stream)
        # an abandoned stream leaves a consistent cache behind
        stream = llm.stream_batch(PROMPTS[:4], max_tokens=10, temperature=0)
        next(stream)
        stream.close()
        assert llm.generate_batch(PROMPTS[:4], max_tokens=10, temperature=0) == whole

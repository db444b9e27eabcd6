"""Prompt caches (RAMPromptCache, DiskPromptCache): states saved after a generation restore the
longest shared prefix of a later prompt, in another LLM object or another process; bounded in
bytes with LRU eviction; damaged entries are misses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from modelgen import random_prompt

PROMPT = "hello world, the cat sat on the mat"


@pytest.fixture(scope="module")
def path(model_factory: Any) -> str:
    return str(model_factory("llama", "q8_0").path)


def make_cache(lib: Any, kind: str, tmp_path: Path, capacity: int = 1 << 24) -> Any:
    if kind == "ram":
        return lib.RAMPromptCache(capacity)
    return lib.DiskPromptCache(tmp_path / "cache", capacity)


def common(a: Any, b: Any) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.mark.parametrize("kind", ["ram", "disk"])
def test_second_llm_decodes_only_new_tokens(lib: Any, path: str, tmp_path: Path, kind: str) -> None:
    cache = make_cache(lib, kind, tmp_path)
    with lib.LLM(path, n_ctx=256, seed=1, prompt_cache=cache) as llm:
        first = llm.generate(PROMPT, max_tokens=8, temperature=0)
        assert llm.last_stats.n_prompt_from_cache == 0
    assert len(cache) == 1
    (key,) = cache.keys()
    prompt2 = PROMPT + first + " and then"
    with lib.LLM(path, n_ctx=256, seed=1) as plain:
        expected = plain.generate(prompt2, max_tokens=8, temperature=0)
        tokens2 = plain.tokenize(prompt2, special=True)
    if kind == "disk":   # a new object over the same directory (as a new process would)
        cache = lib.DiskPromptCache(tmp_path / "cache", 1 << 24)
        assert cache.keys() == [key]
    with lib.LLM(path, n_ctx=256, seed=1) as llm2:
        llm2.set_cache(cache)
        before = llm2.context.stats()["n_tokens_decoded"]
        assert llm2.generate(prompt2, max_tokens=8, temperature=0) == expected
        stats = llm2.last_stats
        n = min(common(key, tokens2), len(tokens2) - 1)
        assert n >= len(llm2.tokenize(PROMPT, special=True)) - 1
        assert stats.n_prompt_from_cache == stats.n_prompt_reused == n
        decoded = llm2.context.stats()["n_tokens_decoded"] - before
        assert decoded == len(tokens2) - n + stats.n_generated - 1
    assert cache.hits == 1
    assert len(cache) == 2   # the second generation was saved too


def test_disk_cache_survives_the_process(lib: Any, path: str, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    with lib.LLM(path, n_ctx=256, seed=1, prompt_cache=lib.DiskPromptCache(directory)) as llm:
        llm.generate(PROMPT, max_tokens=4, temperature=0)
        (key,) = llm.prompt_cache.keys()
    code = (
        "import json, sys, libllm\n"
        "c = libllm.DiskPromptCache(sys.argv[1])\n"
        "k = c.keys()[0]\n"
        "print(json.dumps([len(c), list(k), len(c.get(k) or b'')]))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = subprocess.run(
        [sys.executable, "-c", code, str(directory)], env=env, capture_output=True, text=True,
        check=True,
    )
    n, tokens, size = json.loads(out.stdout)
    assert (n, tuple(tokens)) == (1, key) and size > 0


@pytest.mark.parametrize("kind", ["ram", "disk"])
def test_capacity_and_lru_order(lib: Any, tmp_path: Path, kind: str) -> None:
    cache = make_cache(lib, kind, tmp_path, capacity=1000)
    keys = [tuple(range(i, i + 10)) for i in range(5)]    # 40 bytes of tokens each
    for k in keys[:3]:
        assert cache.put(k, bytes([k[0]]) * 260)             # 300 bytes each
    assert cache.size_bytes == 900 and cache.keys() == keys[:3]
    assert cache.get(keys[0]) == bytes([0]) * 260            # keys[0] is now the newest
    assert cache.put(keys[3], b"x" * 260)                    # evicts keys[1], the oldest
    assert cache.keys() == [keys[2], keys[0], keys[3]]
    assert cache.get(keys[1]) is None and cache.misses == 1
    assert cache.put(keys[4], b"y" * 560)                    # 600: evicts keys[2] and keys[0]
    assert cache.keys() == [keys[3], keys[4]] and cache.size_bytes == 900
    assert not cache.put(tuple(range(100)), b"z" * 700)      # larger than the capacity
    assert cache.size_bytes <= cache.capacity_bytes and len(cache) == 2
    assert cache.longest_prefix([3, 4, 5, 99]) == (keys[3], 3)
    assert cache.longest_prefix([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]) == (keys[4], 10)
    assert cache.longest_prefix([99]) is None
    if kind == "disk":
        again = lib.DiskPromptCache(tmp_path / "cache", 1000)
        assert again.keys() == [keys[3], keys[4]] and again.size_bytes == 900
        assert len(os.listdir(tmp_path / "cache")) == 3      # two entries and the index
        smaller = lib.DiskPromptCache(tmp_path / "cache", 700)   # evicts the oldest on opening
        assert smaller.keys() == [keys[4]]
        assert len(os.listdir(tmp_path / "cache")) == 2
    cache.clear()
    assert len(cache) == 0 and cache.size_bytes == 0


def test_lru_eviction_through_the_llm(lib: Any, path: str) -> None:
    with lib.LLM(path, n_ctx=256, seed=1) as llm:
        llm.generate("a first prompt", max_tokens=4, temperature=0)
        one_entry = len(llm.context.save_seq(0)) + 4 * len(llm._cached)
    cache = lib.RAMPromptCache(one_entry * 3 // 2)            # room for one such entry
    with lib.LLM(path, n_ctx=256, seed=1, prompt_cache=cache) as llm:
        llm.generate("a first prompt", max_tokens=4, temperature=0)
        (k1,) = cache.keys()
        llm.generate("the second one", max_tokens=4, temperature=0)
        (k2,) = cache.keys()
        assert k1 != k2 and cache.size_bytes <= cache.capacity_bytes


def test_damaged_entries_are_misses(lib: Any, path: str, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    with lib.LLM(path, n_ctx=256, seed=1) as plain:
        expected = plain.generate(PROMPT + " again", max_tokens=6, temperature=0)
    with lib.LLM(path, n_ctx=256, seed=1, prompt_cache=lib.DiskPromptCache(directory)) as llm:
        llm.generate(PROMPT, max_tokens=4, temperature=0)
    (entry,) = [p for p in directory.iterdir() if p.name != "index.json"]
    data = bytearray(entry.read_bytes())
    data[-10] ^= 0xFF                                        # a flipped bit in the state
    entry.write_bytes(bytes(data))
    (directory / ".tmp-leftover.part").write_bytes(b"half a write")
    cache = lib.DiskPromptCache(directory)
    assert len(cache) == 1 and not (directory / ".tmp-leftover.part").exists()
    with lib.LLM(path, n_ctx=256, seed=1, prompt_cache=cache) as llm:
        assert llm.generate(PROMPT + " again", max_tokens=6, temperature=0) == expected
        assert llm.last_stats.n_prompt_from_cache == 0
        assert cache.misses == 1 and not entry.exists()
    # a truncated entry file and a garbage index: the index is rebuilt from the entry files
    (entry2,) = [p for p in directory.iterdir() if p.name != "index.json"]
    (directory / "index.json").write_text("{not json")
    cache = lib.DiskPromptCache(directory)
    assert len(cache) == 1
    entry2.write_bytes(entry2.read_bytes()[:-5])
    assert lib.DiskPromptCache(directory).keys() == []       # wrong size: dropped on opening
    assert not entry2.exists()
    # a state that passes the store's checks but not the engine's (RAM: no checksum)
    ram = lib.RAMPromptCache()
    with lib.LLM(path, n_ctx=256, seed=1, prompt_cache=ram) as llm:
        tokens = llm.tokenize(PROMPT, special=True)
        ram.put(tokens, b"LLMSTATE garbage")
        assert llm.generate(PROMPT + " again", max_tokens=6, temperature=0) == expected
        assert llm.last_stats.n_prompt_from_cache == 0
        assert tuple(tokens) not in ram


def test_generate_batch_uses_the_prompt_cache(lib: Any, path: str) -> None:
    base = random_prompt(30, 3)
    prompts = [base + [10, 11], base + [12], random_prompt(8, 4)]
    cache = lib.RAMPromptCache()
    with lib.LLM(path, n_ctx=256, n_seq_max=1, seed=2, prompt_cache=cache) as llm:
        llm.generate_batch([base], max_tokens=2, temperature=0)
    with lib.LLM(path, n_ctx=256, n_seq_max=3, seed=2) as plain:
        expected = plain.generate_batch(prompts, max_tokens=5, temperature=0)
    with lib.LLM(path, n_ctx=256, n_seq_max=3, seed=2, prompt_cache=cache) as llm:
        assert llm.generate_batch(prompts, max_tokens=5, temperature=0) == expected
        stats = llm.last_batch_stats
        assert stats.n_prompt_from_cache == len(base)
        assert stats.n_prompt_decoded == 2 + 1 + 7   # prompt 2 shares BOS

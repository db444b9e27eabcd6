"""The sampler chain through the Python API, against an independent numpy reference.

For each chain the reference computes, in float64, the set of tokens the filters keep and the
final distribution softmax(logits / T) restricted to that set. Over many seeded draws the set
of tokens drawn must equal the kept set and the frequencies must pass a chi-square test.
Penalties are checked against the llama.cpp formula, through the greedy choice and through the
drawn distribution. Logits are seeded random normals (never zeros) of odd sizes, regenerated
when a filter decision sits too close to its threshold for float32 to be trusted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------
# numpy reference
# ------------------------------------------------------------------------------------------

# an op is (kind, value, min_keep); kinds: "top_k", "top_p", "min_p", "temp"


def _order(logits: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Kept ids, best first: larger logit first, ties to the lower id."""
    idx = np.flatnonzero(keep)
    return idx[np.lexsort((idx, -logits[idx]))]


def reference(logits: np.ndarray, ops: list[tuple]) -> tuple[np.ndarray, np.ndarray, bool]:
    """(keep mask, final probabilities, trustworthy) of running ops over logits."""
    x = logits.astype(np.float64)
    keep = np.ones(x.size, dtype=bool)
    trusted = True
    for kind, value, min_keep in ops:
        order = _order(x, keep)
        m = order.size
        xs = x[order]
        w = np.exp(xs - xs[0])
        if kind == "top_k":
            k = int(value)
            if 0 < k < m:
                trusted &= bool(xs[k - 1] - xs[k] > 1e-5)
                keep[order[k:]] = False
        elif kind == "top_p":
            if value < 1.0:
                cum = np.cumsum(w / w.sum())
                trusted &= bool(np.all(np.abs(cum - value) > 1e-5))
                reached = np.flatnonzero(cum >= value)
                if reached.size:
                    last = max(int(reached[0]), min_keep - 1)
                    keep[order[last + 1 :]] = False
        elif kind == "min_p":
            if value > 0.0:
                trusted &= bool(np.all(np.abs(w - value) > 1e-5 * value))
                n_kept = int(np.count_nonzero(w >= value))  # p_i / p_max >= p: a prefix
                if n_kept < min_keep:
                    n_kept = min(min_keep, m)
                keep[order[n_kept:]] = False
        elif kind == "temp":
            if value <= 0.0:
                keep[order[1:]] = False
            else:
                x = x / value
        else:
            raise AssertionError(kind)
    z = np.where(keep, x, -np.inf)
    p = np.exp(z - z[keep].max())
    return keep, p / p.sum(), trusted


def penalize(
    logits: np.ndarray, history: list[int], last_n: int, repeat: float, freq: float, pres: float
) -> np.ndarray:
    """llama.cpp's penalties over the last last_n tokens of history (-1: all, 0: none)."""
    x = logits.astype(np.float64).copy()
    if last_n == 0:
        return x
    window = history if last_n < 0 else history[-last_n:]
    counts = np.bincount(np.asarray(window, dtype=np.int64), minlength=x.size)
    seen = counts > 0
    x[seen] = np.where(x[seen] <= 0, x[seen] * repeat, x[seen] / repeat)
    x[seen] -= counts[seen] * freq + pres
    return x


def build(lib, ops: list[tuple], seed: int):
    s = lib.Sampler.chain()
    for kind, value, min_keep in ops:
        if kind == "top_k":
            s.add_top_k(int(value))
        elif kind == "top_p":
            s.add_top_p(value, min_keep)
        elif kind == "min_p":
            s.add_min_p(value, min_keep)
        else:
            s.add_temp(value)
    return s.add_dist(seed)


def draws(sampler, logits: np.ndarray, n: int) -> np.ndarray:
    return np.fromiter((sampler.sample_logits(logits) for _ in range(n)), np.int64, count=n)


def check_frequencies(drawn: np.ndarray, keep: np.ndarray, prob: np.ndarray) -> None:
    hits = np.bincount(drawn, minlength=keep.size)
    assert set(np.flatnonzero(hits).tolist()) == set(np.flatnonzero(keep).tolist())
    expected = prob[keep] * drawn.size
    chi2 = float(np.sum((hits[keep] - expected) ** 2 / expected))
    df = max(int(keep.sum()) - 1, 1)
    assert chi2 < df + 6.0 * math.sqrt(2.0 * df) + 10.0, (chi2, df)


def usable_logits(ops, n_vocab: int, scale: float, n_draws: int, seed: int):
    """Random logits whose kept set is unambiguous and whose rarest kept token is expected at
    least 20 times in n_draws (so that support equality is a fair test)."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        logits = (rng.standard_normal(n_vocab) * scale + 0.3).astype(np.float32)
        keep, prob, trusted = reference(logits, ops)
        if trusted and prob[keep].min() * n_draws >= 20:
            return logits, keep, prob
    raise AssertionError("no usable logits")


# ------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------

SIZES = [1, 2, 7, 101, 1001, 32003]


@pytest.mark.parametrize("n_vocab", SIZES)
def test_greedy_is_argmax(lib, n_vocab):
    rng = np.random.default_rng(n_vocab)
    chains = [
        lib.Sampler.chain().add_greedy(),
        lib.Sampler.chain(),  # no selector: greedy
        lib.Sampler.chain().add_top_k(1).add_dist(3),
        lib.Sampler.chain().add_temp(0.0).add_dist(4),
        lib.Sampler(temperature=0.0, seed=5),
    ]
    try:
        for _ in range(4):
            logits = (rng.standard_normal(n_vocab) * 2.0 - 1.0).astype(np.float32)
            want = int(np.argmax(logits))
            for s in chains:
                assert s.sample_logits(logits) == want
    finally:
        for s in chains:
            s.close()


def test_greedy_ties_go_to_lowest_id(lib):
    logits = np.array([0.1, 2.0, -1.0, 2.0, 2.0], dtype=np.float32)
    with lib.Sampler.chain().add_greedy() as s:
        assert s.sample_logits(logits) == 1


CASES = {
    "temp": ([("temp", 1.3, 1)], 37, 1.0),
    "top_k": ([("top_k", 13, 1), ("temp", 0.8, 1)], 1001, 1.0),
    "top_p": ([("top_p", 0.7, 1)], 211, 1.5),
    "top_p_temp": ([("top_p", 0.9, 1), ("temp", 1.7, 1)], 4099, 4.0),
    "min_p": ([("min_p", 0.1, 1), ("temp", 0.7, 1)], 999, 1.2),
    "top_k_top_p_min_p_temp": (
        [("top_k", 40, 1), ("top_p", 0.95, 1), ("min_p", 0.05, 1), ("temp", 0.8, 1)],
        3001,
        1.0,
    ),
    "min_keep": ([("top_p", 0.01, 4), ("min_p", 0.99, 2), ("temp", 2.0, 1)], 503, 2.0),
    "temp_first": ([("temp", 2.0, 1), ("min_p", 0.2, 1), ("top_k", 9, 1)], 777, 1.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_support_and_frequencies(lib, case):
    ops, n_vocab, scale = CASES[case]
    n_draws = 12000
    logits, keep, prob = usable_logits(ops, n_vocab, scale, n_draws, seed=len(case) * 7919)
    with build(lib, ops, seed=2024) as s:
        drawn = draws(s, logits, n_draws)
    check_frequencies(drawn, keep, prob)


def test_default_chain_matches_reference(lib):
    """Sampler(...) is penalties -> top_k -> top_p -> min_p -> temp -> dist."""
    ops = [("top_k", 30, 1), ("top_p", 0.9, 1), ("min_p", 0.05, 1), ("temp", 0.7, 1)]
    n_draws = 12000
    logits, keep, prob = usable_logits(ops, 2001, 1.0, n_draws, seed=77)
    with lib.Sampler(temperature=0.7, top_k=30, top_p=0.9, min_p=0.05, seed=123) as s:
        drawn = draws(s, logits, n_draws)
    check_frequencies(drawn, keep, prob)


def test_determinism_by_seed(lib):
    rng = np.random.default_rng(5)
    logits = rng.standard_normal(257).astype(np.float32)

    def seq(seed):
        with lib.Sampler.chain().add_top_k(50).add_temp(1.2).add_dist(seed) as s:
            return draws(s, logits, 400)

    a, b, c = seq(42), seq(42), seq(43)
    assert np.array_equal(a, b)
    assert np.count_nonzero(a != c) > 200
    assert np.unique(a).size > 10

    with lib.Sampler(seed=9, top_k=0, top_p=1.0, min_p=0.0, temperature=1.0) as s:
        first = draws(s, logits, 300)
        s.reset()
        assert np.array_equal(draws(s, logits, 300), first)
    with lib.Sampler(seed=9, top_k=0, top_p=1.0, min_p=0.0, temperature=1.0) as s:
        assert np.array_equal(draws(s, logits, 300), first)


@pytest.mark.parametrize("last_n", [1, 4, 64, -1])
def test_penalties_greedy_match_numpy(lib, last_n):
    rng = np.random.default_rng(100 + last_n)
    n_vocab = 97
    checked = moved = 0
    for trial in range(60):
        logits = (rng.standard_normal(n_vocab) + (-1.5 if trial % 3 == 0 else 0.3)).astype(
            np.float32
        )
        top = int(np.argmax(logits))
        history = [
            top if rng.random() < 0.5 else int(rng.integers(n_vocab))
            for _ in range(int(rng.integers(1, 40)))
        ]
        repeat = float(rng.uniform(1.0, 2.5))
        freq = 0.0 if trial % 4 == 1 else float(rng.uniform(0.0, 0.5))
        pres = 0.0 if trial % 4 == 2 else float(rng.uniform(0.0, 0.8))
        # the sampler holds float32 parameters: so does the reference
        repeat, freq, pres = (float(np.float32(v)) for v in (repeat, freq, pres))
        want_x = penalize(logits, history, last_n, repeat, freq, pres)
        best2 = np.sort(want_x)[-2:]
        if best2[1] - best2[0] < 1e-4:
            continue
        want = int(np.argmax(want_x))
        with lib.Sampler.chain().add_penalties(last_n, repeat, freq, pres).add_greedy() as s:
            for t in history:
                s.accept(t)
            assert s.sample_logits(logits) == want, (trial, history, repeat, freq, pres)
            s.reset()  # forgets the history
            assert s.sample_logits(logits) == top
        checked += 1
        moved += want != top
    assert checked > 40
    assert moved > checked // 5


def test_penalties_distribution_matches_numpy(lib):
    rng = np.random.default_rng(31)
    logits = rng.standard_normal(41).astype(np.float32)
    history = [3, 3, 7, int(np.argmax(logits)), 11, 3, 20, 7]
    last_n, repeat, freq, pres = 6, 1.3, 0.2, 0.4
    x = penalize(logits, history, last_n, float(np.float32(repeat)), float(np.float32(freq)),
                 float(np.float32(pres)))
    keep = np.ones(x.size, dtype=bool)
    prob = np.exp(x - x.max())
    prob /= prob.sum()
    with lib.Sampler.chain().add_penalties(last_n, repeat, freq, pres).add_dist(8) as s:
        for t in history:
            s.accept(t)
        drawn = draws(s, logits, 15000)
    check_frequencies(drawn, keep, prob)


def test_sampler_constructor_penalties_then_greedy(lib):
    """temperature <= 0: penalties -> greedy."""
    logits = np.array([3.0, 2.9, 2.0, -1.0, 0.5], dtype=np.float32)
    with lib.Sampler(temperature=0.0, repeat_penalty=1.1, penalty_last_n=2, seed=1) as s:
        assert s.sample_logits(logits) == 0
        s.accept(0)  # 3.0 / 1.1 = 2.73 < 2.9
        assert s.sample_logits(logits) == 1
        s.accept(1)
        s.accept(1)  # window {1, 1}: token 0 no longer penalised
        assert s.sample_logits(logits) == 0


def test_repeat_multiplies_negative_logits(lib):
    logits = np.array([-1.0, -1.2, -5.0], dtype=np.float32)
    with lib.Sampler.chain().add_penalties(8, 1.5).add_greedy() as s:
        assert s.sample_logits(logits) == 0
        s.accept(0)  # -1.0 * 1.5 = -1.5 < -1.2 (dividing would give -0.67 and keep token 0)
        assert s.sample_logits(logits) == 1


def test_frequencies_high_precision(lib):
    """Few tokens, many draws: each frequency within 4.5 binomial sigmas of softmax."""
    logits = np.array([0.0, 0.1, -0.2, -1.0], dtype=np.float32)
    p = np.exp(logits.astype(np.float64))
    p /= p.sum()
    n = 100_000
    with lib.Sampler.chain().add_dist(77) as s:
        freq = np.bincount(draws(s, logits, n), minlength=4) / n
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 4.5 * sigma), (freq, p)


def test_nan_logits_are_never_drawn(lib):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal(23).astype(np.float32)
    nan_ids = [0, 5, 22]
    logits[nan_ids] = np.nan
    with lib.Sampler.chain().add_temp(1.5).add_dist(6) as s:
        drawn = draws(s, logits, 2000)
    assert not set(nan_ids) & set(drawn.tolist())
    with lib.Sampler.chain().add_greedy() as s:
        assert s.sample_logits(logits) == int(np.nanargmax(logits))
        assert 0 <= s.sample_logits(np.full(9, np.nan, dtype=np.float32)) < 9


def test_logits_are_not_modified(lib):
    logits = np.random.default_rng(3).standard_normal(64).astype(np.float32)
    before = logits.copy()
    with lib.Sampler.chain().add_penalties(8, 1.5, 0.1, 0.1).add_top_k(5).add_dist(1) as s:
        s.accept(int(np.argmax(logits)))
        s.sample_logits(logits)
    assert np.array_equal(logits, before)


def test_invalid_arguments(lib):
    s = lib.Sampler.chain()
    try:
        for bad in (0.0, -0.5, 1.5, float("nan")):
            with pytest.raises(lib.InvalidArgumentError):
                s.add_top_p(bad)
        for bad in (1.5, float("nan")):
            with pytest.raises(lib.InvalidArgumentError):
                s.add_min_p(bad)
        with pytest.raises(lib.InvalidArgumentError):
            s.add_temp(float("nan"))
        with pytest.raises(lib.InvalidArgumentError):
            s.add_penalties(-2, 1.1, 0.0, 0.0)
        with pytest.raises(lib.InvalidArgumentError):
            s.add_penalties(64, 0.0, 0.0, 0.0)
        with pytest.raises(lib.InvalidArgumentError):
            s.add_top_p(0.9, -1)
        # the failed adds left a working chain; the edge values are accepted as "off"
        s.add_top_p(1.0).add_min_p(0.0).add_top_k(0).add_penalties(0, 1.3, 0.0, 0.0)
        logits = np.array([0.0, 1.0, 3.0, 2.0], dtype=np.float32)
        assert s.sample_logits(logits) == 2
    finally:
        s.close()
        s.close()  # idempotent

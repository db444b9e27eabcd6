"""Continuous batching: many prompts generated together over one context.

:class:`BatchGenerator` runs up to ``n_slots`` sequences at once, one context sequence id per
slot. Every :meth:`~BatchGenerator.step` builds ONE batch holding the next token of every
generating sequence plus as many prompt tokens of joining sequences as fit in ``n_batch``,
decodes it once, and samples each sequence from its own row of logits with its own sampler.
A slot whose sequence ends takes the next waiting prompt.

Prompt tokens are shared, never decoded twice:

* a joining prompt first takes the longest prefix it shares with any sequence the cache
  holds (running ones, finished ones whose cells are still there, what ``LLM.generate`` left
  in sequence 0) with ``seq_cp``, which shares the cells;
* prompts joining together are laid out as a trie: a token that several of them have at the
  same place is decoded once, as one batch token carrying all their sequence ids, so N
  prompts with a common P-token prefix occupy P + sum(suffix) cells;
* with a :class:`~libllm.PromptCache`, a longer prefix saved by an earlier request is
  restored with ``load_seq`` instead.

When the cache is full the generator waits instead of failing: it drops the cells of
finished sequences, then holds back prompt tokens (no new prompts join until a sequence
ends), then sends the youngest joining prompts back to the queue, then swaps the youngest
generating sequences out (``save_seq``, restored exactly when room comes back). A single
sequence that reaches the end of the context ends there, as with ``LLM.generate``.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Callable

from . import _lib
from ._errors import ClosedError, LibLLMError, MemoryFullError
from .context import Batch, Context
from .llm import StopMatcher, Utf8Decoder
from .prompt_cache import PromptCache, common_prefix_len
from .sampler import Sampler

_IDLE, _PREFILL, _GENERATE, _SWAPPED = range(4)


@dataclass
class BatchStats:
    """Counters of one batched generation."""

    n_prompts: int = 0
    n_prompt_tokens: int = 0     # tokens of all prompts
    n_prompt_reused: int = 0     # prompt tokens already in the cache when their prompt joined
    n_prompt_from_cache: int = 0  # ... of which restored from the prompt cache
    n_prompt_decoded: int = 0    # prompt cells decoded (a token shared by k prompts: one)
    n_prompt_shared: int = 0     # prompt tokens that rode on a cell decoded for another prompt
    n_generated: int = 0
    n_decode: int = 0            # decode calls (steps)
    n_requeued: int = 0          # joining prompts sent back to the queue (cache full)
    n_preempted: int = 0         # generating sequences swapped out (cache full)
    max_active: int = 0          # the most sequences running at once
    seconds: float = 0.0
    finish_reasons: list[str] = field(default_factory=list)   # per prompt: "stop" or "length"

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of the whole run."""
        return self.n_generated / self.seconds if self.seconds > 0 else 0.0


class _Request:
    __slots__ = (
        "decoder", "from_cache", "index", "matcher", "n_generated", "reused", "sampler", "tokens"
    )

    def __init__(self, index: int, tokens: list[int], sampler: Sampler, stops: list[str]):
        self.index = index
        self.tokens = tokens
        self.sampler = sampler
        self.decoder = Utf8Decoder()
        self.matcher = StopMatcher(stops)
        self.n_generated = 0
        self.reused = 0                 # prompt tokens found in the cache when it joined
        self.from_cache = 0             # ... of which restored from the prompt cache


class _Slot:
    __slots__ = ("held", "last_used", "next_token", "order", "req", "seq", "state", "swap")

    def __init__(self, seq: int, held: list[int]) -> None:
        self.seq = seq
        self.held = held            # the tokens whose cells this sequence holds, by position
        self.state = _IDLE
        self.req: _Request | None = None
        self.next_token = -1        # GENERATE: the sampled token to decode next
        self.swap: bytes | None = None
        self.order = -1             # admission order (the youngest is preempted first)
        self.last_used = -1


class _PrefillToken:
    __slots__ = ("last_for", "pos", "seqs", "token")

    def __init__(self, token: int, pos: int, seqs: list[int], last_for: list[int]) -> None:
        self.token = token
        self.pos = pos
        self.seqs = seqs            # the sequences that get this cell
        self.last_for = last_for    # the sequences whose prompt ends here (logits wanted)


class BatchGenerator:
    """Generates from many prompts at once over ``ctx`` (see the module's description).

    Args:
        ctx: the context; sequence ids 0..n_slots-1 are used as slots.
        prompts: token lists, each at most ``ctx.n_ctx`` tokens.
        held: one list per sequence id of ``ctx`` (n_seq_max lists), saying which tokens
            that sequence holds (positions 0..len-1). They are read as sources of shared
            prefixes and kept up to date in place; sequences past n_slots are only read
            (and dropped when the cache is full).
        make_sampler: the sampler of prompt ``i``; the generator accepts the prompt's tokens
            into it and closes it when the sequence ends.
        n_slots: sequences run at once (at most n_seq_max and n_batch).
        max_tokens: the most tokens generated per prompt (< 0: no limit).
        stops: stop strings (the text never includes them nor what follows).
        prompt_cache: restore prefixes saved by earlier requests, save finished sequences.
    """

    def __init__(
        self,
        ctx: Context,
        prompts: Sequence[Sequence[int]],
        held: list[list[int]],
        make_sampler: Callable[[int], Sampler],
        *,
        n_slots: int,
        max_tokens: int = 128,
        stops: Sequence[str] = (),
        prompt_cache: PromptCache | None = None,
    ) -> None:
        self._ctx = ctx
        self._model = ctx.model
        self._n_ctx = ctx.n_ctx
        n_seq_max = ctx.n_seq_max
        if len(held) != n_seq_max:
            raise ValueError(f"held needs one list per sequence ({n_seq_max}), got {len(held)}")
        n_slots = min(int(n_slots), n_seq_max, ctx.n_batch)
        if n_slots < 1:
            raise ValueError(f"n_slots must be at least 1, got {n_slots}")
        n_vocab = self._model.n_vocab
        token_lists: list[list[int]] = []
        for i, prompt in enumerate(prompts):
            tokens = [int(t) for t in prompt]
            if not tokens:
                raise ValueError(f"prompt {i} has no tokens")
            if len(tokens) > self._n_ctx:
                raise ValueError(
                    f"prompt {i} is {len(tokens)} tokens, more than the context holds "
                    f"({self._n_ctx})"
                )
            bad = [t for t in tokens if not 0 <= t < n_vocab]
            if bad:
                raise ValueError(f"prompt {i} has token ids outside the vocabulary: {bad[:5]}")
            token_lists.append(tokens)
        self._n_slots = n_slots
        self._max_tokens = int(max_tokens)
        self._stops = list(stops)
        self._cache = prompt_cache
        self._slots = [_Slot(seq, held[seq]) for seq in range(n_seq_max)]
        self._queue: deque[_Request] = deque()
        self._pending: deque[_PrefillToken] = deque()
        self._batch = Batch(ctx.n_batch, n_slots)
        self._admit_blocked = False     # no new prompts until a sequence ends
        self._prefill_blocked = False   # no prompt tokens in the batch until a sequence ends
        self._room_freed = False        # a sequence ended since the last restore attempt
        self._clock = 0
        self._closed = False
        self.stats = BatchStats(n_prompts=len(token_lists))
        self.stats.finish_reasons = [""] * len(token_lists)
        try:
            for i, tokens in enumerate(token_lists):
                sampler = make_sampler(i)
                for t in tokens:
                    sampler.accept(t)
                self._queue.append(_Request(i, tokens, sampler, self._stops))
                self.stats.n_prompt_tokens += len(tokens)
        except BaseException:
            self.close()
            raise

    # -- state -------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Every prompt has finished."""
        return not self._queue and all(s.state == _IDLE for s in self._slots)

    @property
    def n_waiting(self) -> int:
        """Prompts not yet running."""
        return len(self._queue)

    @property
    def n_pending_prompt_tokens(self) -> int:
        """Prompt cells of running sequences not decoded yet."""
        return len(self._pending)

    def states(self) -> dict[int, str]:
        """Prompt index -> "prefill", "generate" or "swapped" for the running prompts."""
        names = {_PREFILL: "prefill", _GENERATE: "generate", _SWAPPED: "swapped"}
        return {s.req.index: names[s.state] for s in self._slots if s.req is not None}

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    # -- the loop ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[int, str]]:
        """Runs to the end, yielding (prompt index, text) pieces as they come."""
        t0 = time.perf_counter()
        try:
            while not self.done:
                yield from self.step()
        finally:
            self.stats.seconds += time.perf_counter() - t0
            self.close()

    def step(self) -> list[tuple[int, str]]:
        """One decode of every running sequence (plus prompt tokens of joining ones); returns
        the (prompt index, text) pieces it produced."""
        if self._closed:
            raise RuntimeError("the BatchGenerator is closed")
        try:
            return self._step()
        except BaseException:
            self._abandon()
            raise

    def _step(self) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        ctx = self._ctx
        slots = self._slots
        if not any(s.state in (_PREFILL, _GENERATE) for s in slots):
            self._admit_blocked = self._prefill_blocked = False
            self._room_freed = True
        if self._room_freed:
            self._room_freed = False
            self._restore_swapped()
        if not self._admit_blocked and not any(s.state == _SWAPPED for s in slots):
            self._admit()
        batch = self._batch
        while True:
            batch.clear()
            gens = [s for s in slots if s.state == _GENERATE]
            for s in gens:
                batch.add(s.next_token, len(s.held), s.seq, True)
            prefill: list[_PrefillToken] = []
            if not self._prefill_blocked:
                for pt in self._pending:
                    if len(batch) >= batch.capacity:
                        break
                    batch.add(pt.token, pt.pos, pt.seqs, bool(pt.last_for))
                    prefill.append(pt)
            if len(batch) == 0:
                if not self.done and not out:
                    raise MemoryFullError(
                        _lib.STATUS_MEMORY_FULL,
                        "a swapped-out sequence cannot be restored into the context's cache",
                    )
                return out
            try:
                ctx.decode(batch)
                break
            except MemoryFullError:
                self._relieve(gens, prefill, out)

        stats = self.stats
        stats.n_decode += 1
        stats.max_active = max(stats.max_active, sum(s.state != _IDLE for s in slots))
        for s in gens:
            s.held.append(s.next_token)
        for pt in prefill:
            self._pending.popleft()
            for seq in pt.seqs:
                slots[seq].held.append(pt.token)
            stats.n_prompt_decoded += 1
            stats.n_prompt_shared += len(pt.seqs) - 1
        for i, s in enumerate(gens):
            self._sample(s, i, out)
        for j, pt in enumerate(prefill):
            for seq in pt.last_for:
                s = slots[seq]
                s.state = _GENERATE
                self._sample(s, len(gens) + j, out)
        return out

    def _sample(self, slot: _Slot, idx: int, out: list[tuple[int, str]]) -> None:
        """Samples slot's next token from batch row ``idx`` (LLM.stream's order of checks)."""
        req = slot.req
        assert req is not None
        model = self._model
        max_tokens = self._max_tokens
        if 0 <= max_tokens <= req.n_generated:
            self._finish(slot, "length", out)
            return
        token = req.sampler.sample(self._ctx, idx)
        if model.is_eog(token):
            self._finish(slot, "stop", out)
            return
        req.n_generated += 1
        self.stats.n_generated += 1
        text = req.matcher.feed(req.decoder.feed(model.token_to_piece(token)))
        if text:
            out.append((req.index, text))
        if req.matcher.stopped:
            self._finish(slot, "stop", out)
        elif 0 <= max_tokens <= req.n_generated or len(slot.held) >= self._n_ctx:
            self._finish(slot, "length", out)
        else:
            slot.next_token = token

    def _finish(self, slot: _Slot, reason: str, out: list[tuple[int, str]]) -> None:
        req = slot.req
        assert req is not None
        text = req.matcher.feed(req.decoder.flush())
        text += req.matcher.flush()
        if text:
            out.append((req.index, text))
        req.sampler.close()
        self.stats.finish_reasons[req.index] = reason
        slot.req = None
        slot.state = _IDLE
        slot.last_used = self._tick()
        self._admit_blocked = self._prefill_blocked = False
        self._room_freed = True
        if self._cache is not None:
            self._save_to_cache(slot)

    def _save_to_cache(self, slot: _Slot) -> None:
        cache = self._cache
        assert cache is not None
        if not slot.held or cache.touch(slot.held):
            return
        cache.put(slot.held, self._ctx.save_seq(slot.seq))

    # -- joining -----------------------------------------------------------------------------

    def _admit(self) -> None:
        """Fills the free slots with waiting prompts and plans their prompt tokens."""
        free = [s for s in self._slots[: self._n_slots] if s.state == _IDLE]
        group: list[_Slot] = []
        while free and self._queue:
            req = self._queue.popleft()
            slot = self._place(req, free)
            free.remove(slot)
            slot.req = req
            slot.state = _PREFILL
            slot.order = self._tick()
            group.append(slot)
        if group:
            self._plan(group)

    def _place(self, req: _Request, free: list[_Slot]) -> _Slot:
        """Picks a free slot for ``req`` and gives it the longest prefix the cache has."""
        tokens = req.tokens
        limit = len(tokens) - 1         # the last prompt token is always decoded (logits)
        best: _Slot | None = None
        best_n = 0
        for s in self._slots:
            if s.state == _SWAPPED or not s.held:
                continue
            n = min(common_prefix_len(s.held, tokens), limit)
            if n > best_n or (n == best_n and n > 0 and s in free and best not in free):
                best, best_n = s, n
        if best is not None and best in free:
            slot = best
        else:
            slot = min(free, key=lambda s: (len(s.held) > 0, s.last_used, s.seq))
        slot.req = req
        n = 0
        if best is slot:
            n = self._truncate(slot, best_n)
        else:
            self._truncate(slot, 0)
            if best is not None and best_n > 0:
                self._ctx.seq_cp(best.seq, slot.seq, 0, best_n)
                slot.held.extend(best.held[:best_n])
                n = best_n
        if self._cache is not None:
            n = max(n, self._restore_from_cache(slot, tokens, n))
        req.reused = n
        self.stats.n_prompt_reused += n
        self.stats.n_prompt_from_cache += req.from_cache
        return slot

    def _truncate(self, slot: _Slot, n: int) -> int:
        """Drops slot's cells from position n on (always, so that no stray cell is left);
        returns the length kept."""
        n = self._ctx.seq_truncate(slot.seq, min(n, len(slot.held)))
        del slot.held[n:]
        return n

    def _restore_from_cache(self, slot: _Slot, tokens: list[int], n_have: int) -> int:
        """Loads a prompt-cache entry into slot when it shares more than n_have tokens with
        ``tokens``; returns the tokens the slot then holds (n_have when nothing changed)."""
        cache = self._cache
        assert cache is not None
        found = cache.longest_prefix(tokens)
        if found is None:
            return n_have
        key, n = found
        n = min(n, len(tokens) - 1)
        if n <= n_have:
            return n_have
        data = cache.get(key)
        if data is None:
            return n_have
        ctx = self._ctx
        try:
            ctx.load_seq(data, slot.seq)
        except MemoryFullError:
            return n_have
        except LibLLMError:             # damaged or foreign: forget it
            cache.remove(key)
            return n_have
        if ctx.seq_pos_max(slot.seq) != len(key) - 1 or ctx.seq_pos_min(slot.seq) != 0:
            cache.remove(key)
            ctx.seq_rm(slot.seq)
            slot.held.clear()
            return 0
        slot.held[:] = key
        n = self._truncate(slot, n)
        if slot.req is not None:
            slot.req.from_cache = n
        return n

    def _plan(self, group: list[_Slot]) -> None:
        """Queues the prompt tokens of the slots in ``group`` as a trie: a token several
        prompts have at the same depth (after a common prefix) is one cell for all of them."""
        pending = self._pending
        tokens = {s.seq: s.req.tokens for s in group if s.req is not None}
        have = {s.seq: len(s.held) for s in group}
        stack: list[tuple[int, list[int]]] = [(0, [s.seq for s in group])]
        while stack:
            depth, members = stack.pop()
            if len(members) == 1:       # a lone branch: the rest of one prompt
                seq = members[0]
                toks = tokens[seq]
                for d in range(max(depth, have[seq]), len(toks)):
                    last = [seq] if d == len(toks) - 1 else []
                    pending.append(_PrefillToken(toks[d], d, [seq], last))
                continue
            buckets: dict[int, list[int]] = {}
            for seq in members:
                if len(tokens[seq]) > depth:
                    buckets.setdefault(tokens[seq][depth], []).append(seq)
            children: list[tuple[int, list[int]]] = []
            for token, seqs in buckets.items():
                need = [q for q in seqs if have[q] <= depth]
                if need:
                    last = [q for q in need if len(tokens[q]) - 1 == depth]
                    pending.append(_PrefillToken(token, depth, need, last))
                if any(len(tokens[q]) > depth + 1 for q in seqs):
                    children.append((depth + 1, seqs))
            stack.extend(reversed(children))

    # -- a full cache ------------------------------------------------------------------------

    def _drop_idle(self) -> bool:
        """Drops the cells of every sequence that runs nothing; whether there were any."""
        dropped = False
        for s in self._slots:
            if s.state == _IDLE and s.held:
                self._ctx.seq_rm(s.seq)
                s.held.clear()
                dropped = True
        return dropped

    def _relieve(
        self, gens: list[_Slot], prefill: list[_PrefillToken], out: list[tuple[int, str]]
    ) -> None:
        """Makes room after a batch did not fit; each call changes something, so the caller's
        retry loop ends."""
        if self._drop_idle():
            return
        if prefill and gens and not self._prefill_blocked:
            self._prefill_blocked = True
            return
        joiners = [s for s in self._slots if s.state == _PREFILL]
        if len(gens) + len(joiners) <= 1:
            if gens:                    # one sequence alone at the end of the context
                self._finish(gens[0], "length", out)
                return
            req = joiners[0].req if joiners else None
            what = f"prompt {req.index} ({len(req.tokens)} tokens)" if req else "the batch"
            raise MemoryFullError(
                _lib.STATUS_MEMORY_FULL,
                f"{what} does not fit in the context's cache ({self._n_ctx} cells) even alone",
            )
        self._admit_blocked = True
        if joiners:
            self._requeue(max(joiners, key=lambda s: s.order))
        else:
            self._swap_out(max(gens, key=lambda s: s.order))

    def _requeue(self, slot: _Slot) -> None:
        """Sends a joining prompt back to the front of the queue, freeing its cells."""
        req = slot.req
        assert req is not None
        self._ctx.seq_rm(slot.seq)
        slot.held.clear()
        kept: deque[_PrefillToken] = deque()
        for pt in self._pending:
            if slot.seq in pt.seqs:
                pt.seqs.remove(slot.seq)
                if slot.seq in pt.last_for:
                    pt.last_for.remove(slot.seq)
            if pt.seqs:
                kept.append(pt)
        self._pending = kept
        slot.req = None
        slot.state = _IDLE
        self._queue.appendleft(req)
        self.stats.n_requeued += 1
        self.stats.n_prompt_reused -= req.reused
        self.stats.n_prompt_from_cache -= req.from_cache
        req.reused = req.from_cache = 0

    def _swap_out(self, slot: _Slot) -> None:
        """Saves a generating sequence's cells and frees them (restored later, exactly)."""
        slot.swap = self._ctx.save_seq(slot.seq)
        self._ctx.seq_rm(slot.seq)
        slot.state = _SWAPPED
        self.stats.n_preempted += 1

    def _restore_swapped(self) -> None:
        for s in sorted((s for s in self._slots if s.state == _SWAPPED), key=lambda s: s.order):
            assert s.swap is not None
            try:
                self._ctx.load_seq(s.swap, s.seq)
            except MemoryFullError:
                if not self._drop_idle():
                    return
                try:
                    self._ctx.load_seq(s.swap, s.seq)
                except MemoryFullError:
                    return
            s.swap = None
            s.state = _GENERATE

    # -- the end -----------------------------------------------------------------------------

    def _abandon(self) -> None:
        """After an error inside a step: the running sequences' cells may not match their
        token lists any more, so they are dropped."""
        for s in self._slots:
            if s.state != _IDLE:
                with contextlib.suppress(LibLLMError, ClosedError):   # closed: nothing to fix
                    self._ctx.seq_rm(s.seq)
                s.held.clear()
        self.close()

    def close(self) -> None:
        """Ends every sequence (their samplers are freed); sequences swapped out lose their
        tokens, the others keep their cells. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for s in self._slots:
            if s.req is not None:
                s.req.sampler.close()
                s.req = None
            if s.state == _SWAPPED:
                s.held.clear()
                s.swap = None
            s.state = _IDLE
        for req in self._queue:
            req.sampler.close()
        self._queue.clear()
        self._pending.clear()

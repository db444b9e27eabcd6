"""LLM: the friendly API (load a model, generate or stream text, score tokens)."""

from __future__ import annotations

import codecs
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _log
from ._errors import LibLLMError, MemoryFullError
from .chat import ChatTemplate, Message
from .context import Context
from .model import Model
from .prompt_cache import PromptCache
from .sampler import RANDOM_SEED, Sampler, resolve_seed

if TYPE_CHECKING:
    from typing_extensions import Self

    from .batch_gen import BatchGenerator, BatchStats


class Utf8Decoder:
    """Turns a stream of byte chunks (token pieces) into text that is always valid UTF-8.

    Bytes of a multi-byte character split across chunks are held until the character is
    complete; invalid bytes become U+FFFD."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        """The text completed by ``data`` (possibly "")."""
        return self._decoder.decode(data, final=False)

    def flush(self) -> str:
        """Whatever is left at the end of the stream (an incomplete character: U+FFFD)."""
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Cuts a stream of text at the first occurrence of any stop string.

    Text that might be the start of a stop string is held back until it is clear, so that a
    stop string split across chunks is still cut exactly: the text returned never contains
    a stop string nor anything after it."""

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of ``text`` (plus anything held before) that is safe to emit now. After a
        stop string is found, :attr:`stopped` is True and further input is ignored."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        pending = self._pending + text
        cut = -1
        for stop in self._stops:
            i = pending.find(stop)
            if i >= 0 and (cut < 0 or i < cut):
                cut = i
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return pending[:cut]
        hold = 0
        for stop in self._stops:
            # the longest suffix of pending that is a proper prefix of this stop string
            for k in range(min(len(stop) - 1, len(pending)), hold, -1):
                if pending.endswith(stop[:k]):
                    hold = k
                    break
        self._pending = pending[len(pending) - hold :]
        return pending[: len(pending) - hold]

    def flush(self) -> str:
        """At the end of the stream: the held-back text (it was not a stop string)."""
        if self.stopped:
            return ""
        rest, self._pending = self._pending, ""
        return rest


@dataclass
class GenerationStats:
    """Counters of the last :meth:`LLM.stream` / :meth:`LLM.generate` call."""

    n_prompt_tokens: int = 0
    n_prompt_reused: int = 0     # prompt tokens whose cache entries were kept from before
    n_prompt_from_cache: int = 0  # ... of which restored from the prompt cache
    prompt_seconds: float = 0.0
    n_generated: int = 0
    generate_seconds: float = 0.0

    @property
    def prompt_tokens_per_second(self) -> float:
        n = self.n_prompt_tokens - self.n_prompt_reused
        return n / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def generate_tokens_per_second(self) -> float:
        return self.n_generated / self.generate_seconds if self.generate_seconds > 0 else 0.0


class LLM:
    """A model with one context, ready to generate text.

    >>> with LLM("model.gguf") as llm:
    ...     print(llm.generate("Once upon a time", max_tokens=32, temperature=0))

    Generation uses sequence 0 of the context, which each call clears; one generation runs
    at a time (starting another one ends a stream that is still being read).

    Args:
        model_path: the GGUF file.
        n_ctx: context size in tokens (0: the model's training context).
        n_threads: compute threads (0: the number of cores).
        n_batch: the most tokens decoded per call (prompts are split into such chunks).
        n_ubatch: the most tokens computed at once (at most n_batch).
        n_seq_max: sequences the context can hold.
        seed: sampling seed used when a call gives none; 0xFFFFFFFF draws a random seed
            for each call.
        n_gpu_layers: layers to offload to a GPU.
        type_k, type_v: KV cache types ("f32", "f16", "bf16", "q8_0", "q4_0").
        verbose: show every library log line on stderr.
        prompt_cache: a :class:`~libllm.PromptCache` that keeps prompt states across
            requests and LLM objects (see :meth:`set_cache`).
        progress: called with the loading progress in [0, 1]; returning False aborts.
        snapshot_interval, n_snapshots: recurrent and hybrid models (Mamba, Jamba): keep the
            state every this many positions (pool of n_snapshots, 0: 8 per sequence), so a
            new prompt sharing a prefix with the last one reuses the state up to the newest
            snapshot inside the prefix instead of decoding everything again.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = 2048,
        n_threads: int = 0,
        n_batch: int = 512,
        n_seq_max: int = 1,
        seed: int = RANDOM_SEED,
        n_gpu_layers: int = 0,
        type_k: str = "f16",
        type_v: str = "f16",
        verbose: bool = False,
        n_ubatch: int = 512,
        prompt_cache: PromptCache | None = None,
        progress: Callable[[float], bool | None] | None = None,
        snapshot_interval: int = 0,
        n_snapshots: int = 0,
    ) -> None:
        if verbose:
            _log.enable_verbose()
        self.seed = int(seed)
        self.last_stats = GenerationStats()
        self.last_batch_stats: BatchStats | None = None
        self._generation = 0
        self._chat_template: ChatTemplate | None = None
        # _held[s]: the tokens sequence s holds in the cache, in position order (_held[0] is
        # what generate/stream reuse); _exact0: how many leading tokens of sequence 0 have the
        # cells a fresh decode would give (a context shift makes the rest approximate)
        self._held: list[list[int]] = [[]]
        self._exact0 = 0
        self._prompt_cache: PromptCache | None = None
        if prompt_cache is not None:
            self.set_cache(prompt_cache)
        self.model = Model(model_path, n_gpu_layers=n_gpu_layers, progress=progress)
        try:
            if n_batch > 0 and n_ubatch > n_batch:
                n_ubatch = n_batch
            self.context = Context(
                self.model,
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_ubatch=n_ubatch,
                n_seq_max=n_seq_max,
                n_threads=n_threads,
                type_k=type_k,
                type_v=type_v,
                snapshot_interval=snapshot_interval,
                n_snapshots=n_snapshots,
            )
        except BaseException:
            self.model.close()
            raise
        self._held = [[] for _ in range(max(1, self.context.n_seq_max))]

    @property
    def _cached(self) -> list[int]:
        """The tokens sequence 0 holds in the cache, in order."""
        return self._held[0]

    # -- prompt cache --------------------------------------------------------------------

    @property
    def prompt_cache(self) -> PromptCache | None:
        """The prompt cache in use, if any."""
        return self._prompt_cache

    def set_cache(self, cache: PromptCache | None) -> None:
        """Uses ``cache`` (None: none) to keep prompt states across requests.

        Before decoding a prompt, the entry sharing the longest prefix with it is restored
        when that prefix is longer than what the context already holds, and only the rest is
        decoded; after a generation, the sequence is saved under its tokens (prompt and
        generated text). Several LLM objects of the same model may share one cache."""
        if cache is not None and not isinstance(cache, PromptCache):
            raise TypeError(f"set_cache needs a libllm.PromptCache, got {type(cache).__name__}")
        self._prompt_cache = cache

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Frees the context, then the model. Idempotent."""
        self._generation += 1
        context = getattr(self, "context", None)
        if context is not None:
            context.close()
        self.model.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens --------------------------------------------------------------------------

    def tokenize(self, text: str | bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """See :meth:`Model.tokenize`."""
        return self.model.tokenize(text, add_bos, special)

    def detokenize(self, ids: Sequence[int]) -> str:
        """See :meth:`Model.detokenize`."""
        return self.model.detokenize(ids)

    # -- generation ----------------------------------------------------------------------

    # -- chat --------------------------------------------------------------------------

    @property
    def chat_template(self) -> ChatTemplate:
        """The model's chat template (ChatML when the file has none)."""
        if self._chat_template is None:
            self._chat_template = ChatTemplate.from_model(self.model)
        return self._chat_template

    def chat_prompt(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages`` as :meth:`stream` takes it: the template's output
        without the BOS text that tokenizing adds anyway."""
        template = self.chat_template
        text = template.render(messages, add_generation_prompt=add_generation_prompt)
        bos = template.bos_token
        if bos and self.model.add_bos and text.startswith(bos):
            text = text[len(bos):]
        return text

    def chat(self, messages: Sequence[Message], **kwargs: Any) -> str:
        """The assistant's reply to ``messages`` (dicts with ``role`` and ``content``),
        formatted with the model's chat template; ``kwargs`` are :meth:`generate`'s. A
        conversation that grows turn by turn decodes only each new turn: the earlier ones
        are still in the cache."""
        return "".join(self.chat_stream(messages, **kwargs))

    def chat_stream(self, messages: Sequence[Message], **kwargs: Any) -> Iterator[str]:
        """:meth:`chat`, yielding the reply in pieces."""
        return self.stream(self.chat_prompt(messages), **kwargs)

    def generate(
        self,
        prompt: str,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        context_shift: bool = False,
        n_keep: int = 0,
    ) -> str:
        """The text generated after ``prompt`` (see :meth:`stream`)."""
        return "".join(
            self.stream(
                prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                min_p=min_p,
                repeat_penalty=repeat_penalty,
                stop=stop,
                seed=seed,
                context_shift=context_shift,
                n_keep=n_keep,
            )
        )

    def stream(
        self,
        prompt: str,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        context_shift: bool = False,
        n_keep: int = 0,
    ) -> Iterator[str]:
        """Generates text after ``prompt``, yielding pieces of valid UTF-8 as they come.

        The prompt is tokenized (BOS per the model, special tokens parsed) and decoded into
        a cleared sequence 0; then up to ``max_tokens`` tokens (< 0: no limit) are sampled.
        Generation ends at an end-of-generation token, when the context is full, or at the
        first ``stop`` string: the text yielded never includes the stop string or anything
        after it. ``temperature <= 0`` is greedy. ``seed`` None uses the LLM's seed.

        The cache is reused across calls: a prompt that extends the previous prompt and
        generation only decodes its new tokens. With ``context_shift``, generation goes on
        past ``n_ctx``: when the context is full, the first ``n_keep`` tokens stay and half of
        the rest is discarded, the remainder sliding down (llama.cpp's context shift).
        """
        if n_keep < 0:
            raise ValueError(f"n_keep must be >= 0, got {n_keep}")
        stops = self._stop_list(stop)
        sampler = Sampler(
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            seed=self.seed if seed is None else seed,
        )
        self._generation += 1
        shift_keep = n_keep if context_shift else None
        return self._stream(self._generation, prompt, max_tokens, sampler, stops, shift_keep)

    @staticmethod
    def _stop_list(stop: Sequence[str] | str | None) -> list[str]:
        if isinstance(stop, str):
            stops: list[str] = [stop]
        else:
            stops = list(stop) if stop is not None else []
        for s in stops:
            if not isinstance(s, str):
                raise TypeError(f"stop strings must be str, got {type(s).__name__}")
        return stops

    def generate_batch(
        self,
        prompts: Sequence[str | Sequence[int]],
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> list[str]:
        """The texts generated after each of ``prompts``, in order (see :meth:`stream_batch`)."""
        parts: list[list[str]] = [[] for _ in prompts]
        for i, text in self.stream_batch(
            prompts,
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            stop=stop,
            seed=seed,
        ):
            parts[i].append(text)
        return ["".join(p) for p in parts]

    def stream_batch(
        self,
        prompts: Sequence[str | Sequence[int]],
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> Iterator[tuple[int, str]]:
        """Generates after many prompts at once (continuous batching), yielding
        ``(prompt index, text)`` pieces as they come.

        Up to ``min(len(prompts), n_seq_max)`` sequences run together, one decode per step
        for all of them; a waiting prompt takes the place of one that ends. Prompt prefixes
        are decoded once and shared (with each other, with what the context still holds,
        and with the prompt cache). A str prompt is tokenized as in :meth:`stream`; a list of
        token ids is used as is. Prompt ``i`` is sampled with the seed ``seed + i``, so a
        result does not depend on the scheduling, and equals ``generate(prompts[i],
        seed=seed + i)`` (to floating-point rounding); the other arguments are those of
        :meth:`stream`. When the cache is full, prompts wait for running sequences to end;
        a prompt longer than the context raises ValueError before anything runs. Counters
        and finish reasons land in :attr:`last_batch_stats`. The context's other sequences
        are used by this call: their old contents serve as shared prefixes or are dropped.
        """
        from .batch_gen import BatchGenerator

        if isinstance(prompts, str):
            raise TypeError("generate_batch needs a sequence of prompts, not one str")
        stops = self._stop_list(stop)
        model = self.model
        token_lists: list[list[int]] = []
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, (str, bytes)):
                tokens = model.tokenize(prompt, add_bos=True, special=True)
                if not tokens:
                    if model.bos < 0:
                        raise ValueError(f"prompt {i} is empty and the model has no BOS token")
                    tokens = [model.bos]
            else:
                tokens = [int(t) for t in prompt]
            token_lists.append(tokens)
        base = resolve_seed(self.seed if seed is None else seed)

        def make_sampler(i: int) -> Sampler:
            return Sampler(
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                min_p=min_p,
                repeat_penalty=repeat_penalty,
                seed=(base + i) % RANDOM_SEED,
            )

        self._generation += 1
        generation = self._generation
        ctx = self.context
        if self._exact0 < len(self._cached):   # a shifted sequence 0 is no exact prefix
            del self._cached[ctx.seq_truncate(0, self._exact0) :]
        gen = BatchGenerator(
            ctx,
            token_lists,
            self._held,
            make_sampler,
            n_slots=max(1, len(token_lists)),
            max_tokens=max_tokens,
            stops=stops,
            prompt_cache=self._prompt_cache,
        )
        self.last_batch_stats = gen.stats
        return self._stream_batch(generation, gen)

    def _stream_batch(self, generation: int, gen: BatchGenerator) -> Iterator[tuple[int, str]]:
        try:
            for piece in gen:
                yield piece
                if generation != self._generation:
                    raise RuntimeError("another generation was started on this LLM")
        finally:
            gen.close()
            self._exact0 = len(self._cached)

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Drops the cached tokens of sequence 0 past the longest prefix shared with
        ``tokens`` and returns its length (at most len(tokens) - 1: the last prompt token is
        always decoded, for its logits)."""
        cached = self._cached
        n = 0
        limit = min(len(cached), len(tokens) - 1)
        while n < limit and cached[n] == tokens[n]:
            n += 1
        n = self.context.seq_truncate(0, n)
        del cached[n:]
        self._exact0 = min(self._exact0, n)
        return n

    def _restore_prefix(self, tokens: list[int], n_reused: int) -> int:
        """Restores sequence 0 from the prompt cache when an entry shares more than
        ``n_reused`` tokens with ``tokens`` (at most len(tokens) - 1); returns the prefix
        length sequence 0 then holds. A damaged or foreign entry is removed (a miss)."""
        cache = self._prompt_cache
        if cache is None:
            return n_reused
        found = cache.longest_prefix(tokens)
        if found is None:
            return n_reused
        key, n = found
        n = min(n, len(tokens) - 1)
        if n <= n_reused:
            return n_reused
        data = cache.get(key)
        if data is None:
            return n_reused
        ctx = self.context
        try:
            ctx.load_seq(data, 0)
        except MemoryFullError:
            if not self._drop_other_seqs():
                return n_reused
            try:
                ctx.load_seq(data, 0)
            except LibLLMError:
                return n_reused
        except LibLLMError:
            cache.remove(key)
            return n_reused
        cached = self._cached
        if ctx.seq_pos_min(0) != 0 or ctx.seq_pos_max(0) != len(key) - 1:
            cache.remove(key)
            ctx.seq_rm(0)
            cached.clear()
            self._exact0 = 0
            return 0
        n = ctx.seq_truncate(0, n)
        cached[:] = key[:n]
        self._exact0 = n
        return n

    def _save_prefix(self) -> None:
        """Saves sequence 0 in the prompt cache under its tokens (when they are exact)."""
        cache = self._prompt_cache
        cached = self._cached
        if cache is None or not cached or self._exact0 != len(cached):
            return
        if not cache.touch(cached):
            cache.put(cached, self.context.save_seq(0))

    def _drop_other_seqs(self) -> bool:
        """Frees the cells of sequences other than 0 (left by generate_batch); whether there
        were any."""
        dropped = False
        for seq in range(1, len(self._held)):
            if self._held[seq]:
                self.context.seq_rm(seq)
                self._held[seq].clear()
                dropped = True
        return dropped

    def _decode0(self, tokens: list[int], pos0: int) -> None:
        """Decodes ``tokens`` into sequence 0 from ``pos0`` in chunks of n_batch (logits of
        the last one), appending them to its token list chunk by chunk; frees other
        sequences' cells when the cache is full."""
        ctx = self.context
        n_batch = ctx.n_batch
        exact = self._exact0 == len(self._cached)
        for start in range(0, len(tokens), n_batch):
            chunk = tokens[start : start + n_batch]
            logits = "last" if start + n_batch >= len(tokens) else "none"
            try:
                ctx.decode_tokens(chunk, pos0=pos0 + start, seq_id=0, logits=logits)
            except MemoryFullError:
                if not self._drop_other_seqs():
                    raise
                ctx.decode_tokens(chunk, pos0=pos0 + start, seq_id=0, logits=logits)
            self._cached.extend(chunk)
            if exact:
                self._exact0 = len(self._cached)

    def _shift(self, n_past: int, n_keep: int) -> int:
        """Discards half of the tokens after the first n_keep and slides the rest down;
        returns the new n_past."""
        ctx = self.context
        n_keep = min(n_keep, n_past - 2)
        n_discard = (n_past - n_keep) // 2
        ctx.seq_rm(0, n_keep, n_keep + n_discard)
        ctx.seq_add(0, n_keep + n_discard, n_past, -n_discard)
        del self._cached[n_keep : n_keep + n_discard]
        self._exact0 = min(self._exact0, n_keep)
        return n_past - n_discard

    def _stream(
        self,
        generation: int,
        prompt: str,
        max_tokens: int,
        sampler: Sampler,
        stops: list[str],
        shift_keep: int | None,
    ) -> Iterator[str]:
        model, ctx = self.model, self.context
        stats = self.last_stats = GenerationStats()

        def check_current() -> None:
            if generation != self._generation:
                raise RuntimeError("another generation was started on this LLM")

        with sampler:
            tokens = model.tokenize(prompt, add_bos=True, special=True)
            if not tokens:
                if model.bos < 0:
                    raise ValueError("the prompt is empty and the model has no BOS token")
                tokens = [model.bos]
            n_ctx = ctx.n_ctx
            if len(tokens) > n_ctx:
                raise ValueError(
                    f"the prompt is {len(tokens)} tokens, more than the context holds ({n_ctx})"
                )
            stats.n_prompt_tokens = len(tokens)
            for token in tokens:
                sampler.accept(token)

            t0 = time.perf_counter()
            n_reused = self._reuse_prefix(tokens)
            n_restored = self._restore_prefix(tokens, n_reused)
            if n_restored > n_reused:
                stats.n_prompt_from_cache = n_restored
            n_reused = n_restored
            stats.n_prompt_reused = n_reused
            try:
                self._decode0(tokens[n_reused:], n_reused)
            except BaseException:
                ctx.seq_rm(0)
                self._cached.clear()
                self._exact0 = 0
                raise
            stats.prompt_seconds = time.perf_counter() - t0

            decoder = Utf8Decoder()
            matcher = StopMatcher(stops)
            n_past = len(tokens)
            while max_tokens < 0 or stats.n_generated < max_tokens:
                check_current()
                t0 = time.perf_counter()
                token = sampler.sample(ctx, -1)
                stats.generate_seconds += time.perf_counter() - t0
                if model.is_eog(token):
                    break
                stats.n_generated += 1
                text = matcher.feed(decoder.feed(model.token_to_piece(token)))
                if text:
                    yield text
                    check_current()
                if matcher.stopped:
                    break
                if 0 <= max_tokens <= stats.n_generated:
                    break
                if n_past >= n_ctx:
                    if shift_keep is None:
                        break
                    n_past = self._shift(n_past, shift_keep)
                t0 = time.perf_counter()
                try:
                    self._decode0([token], n_past)
                except MemoryFullError:
                    break
                finally:
                    stats.generate_seconds += time.perf_counter() - t0
                n_past += 1
            self._save_prefix()
            text = matcher.feed(decoder.flush())
            text += matcher.flush()
            if text:
                yield text

    # -- scoring -------------------------------------------------------------------------

    def logits(self, tokens: Sequence[int]) -> npt.NDArray[np.float32]:
        """Logits for every position of ``tokens`` (shape (len(tokens), n_vocab), a copy),
        computed on a cleared sequence 0 in chunks of n_batch (which then holds them: a
        later prompt starting with these tokens reuses them)."""
        ctx = self.context
        n = len(tokens)
        n_vocab = self.model.n_vocab
        out = np.empty((n, n_vocab), dtype=np.float32)
        if n == 0:
            return out
        if n > ctx.n_ctx:
            raise ValueError(f"{n} tokens are more than the context holds ({ctx.n_ctx})")
        self._generation += 1
        ctx.seq_rm(0)
        self._cached.clear()
        self._exact0 = 0
        n_batch = ctx.n_batch
        for start in range(0, n, n_batch):
            chunk = list(tokens[start : start + n_batch])
            try:
                ctx.decode_tokens(chunk, pos0=start, seq_id=0, logits="all")
            except MemoryFullError:
                if not self._drop_other_seqs():
                    raise
                ctx.decode_tokens(chunk, pos0=start, seq_id=0, logits="all")
            self._cached.extend(chunk)
            self._exact0 = len(self._cached)
            out[start : start + len(chunk)] = ctx.all_logits()
        return out

"""Prompt caches: saved sequence states keyed by the tokens they hold, reused across requests.

A :class:`PromptCache` maps a token sequence to the saved state of a context sequence that
holds exactly those tokens at positions 0..n-1 (``Context.save_seq`` bytes: the cells' rows,
no logits). :class:`~libllm.LLM` looks up the entry sharing the longest prefix with a new
prompt, restores it (``Context.load_seq``), drops what lies past the shared prefix and decodes
only the rest; after a generation it saves the sequence under its tokens.

Two stores are provided, both bounded in bytes with least-recently-used eviction:
:class:`RAMPromptCache` (in this process) and :class:`DiskPromptCache` (a directory that
outlives the process: one file per entry plus an index, every file written to a temporary
name and renamed into place, damaged entries dropped as misses).

The size of an entry is its state's bytes plus four bytes per token. States are tied to the
model that saved them (the engine checks a fingerprint when loading), so use one cache, or
one directory, per model.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

# A cache key: the tokens the saved sequence holds, in position order.
TokenKey = tuple[int, ...]


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    # a short scan first: most mismatches come early and cost no array conversion
    while i < n and i < 16:
        if a[i] != b[i]:
            return i
        i += 1
    if i == n:
        return n
    x = np.asarray(a[:n], dtype=np.int64)
    y = np.asarray(b[:n], dtype=np.int64)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n


def _as_key(tokens: Iterable[int]) -> TokenKey:
    return tuple(int(t) for t in tokens)


def _key_array(key: TokenKey) -> npt.NDArray[np.int32]:
    return np.asarray(key, dtype=np.int32)


class PromptCache(ABC):
    """A bounded store of sequence states keyed by token sequences, evicting the least
    recently used entries first.

    Subclasses provide the storage (``_read``, ``_write``, ``_delete``); this class keeps the
    keys, sizes and recency order, and the counters ``hits`` and ``misses`` of :meth:`get`.

    Args:
        capacity_bytes: the most bytes the entries may take together (state bytes plus four
            per token). An entry larger than this is not stored.
    """

    def __init__(self, capacity_bytes: int) -> None:
        capacity_bytes = int(capacity_bytes)
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self._capacity = capacity_bytes
        self._entries: OrderedDict[TokenKey, int] = OrderedDict()   # key -> size, oldest first
        self._arrays: dict[TokenKey, npt.NDArray[np.int32]] = {}
        self._size = 0
        self.hits = 0
        self.misses = 0

    # -- storage (subclasses) ----------------------------------------------------------------

    @abstractmethod
    def _read(self, key: TokenKey) -> bytes | None:
        """The stored state of ``key``, or None when it is missing or damaged."""

    @abstractmethod
    def _write(self, key: TokenKey, data: bytes) -> None:
        """Stores the state of ``key`` (replacing any previous one)."""

    @abstractmethod
    def _delete(self, key: TokenKey) -> None:
        """Removes the stored state of ``key`` (no error when it is missing)."""

    def _changed(self) -> None:
        """Called after the keys or their order changed (the disk cache writes its index)."""

    # -- bookkeeping -------------------------------------------------------------------------

    @staticmethod
    def entry_size(key: Sequence[int], data: bytes) -> int:
        """The bytes an entry counts against the capacity."""
        return len(data) + 4 * len(key)

    @property
    def capacity_bytes(self) -> int:
        return self._capacity

    @property
    def size_bytes(self) -> int:
        """The bytes the entries take now (always <= capacity_bytes)."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (tuple, list)):
            return False
        return _as_key(key) in self._entries

    def keys(self) -> list[TokenKey]:
        """The keys, least recently used first."""
        return list(self._entries)

    def _add(self, key: TokenKey, size: int) -> None:
        self._entries[key] = size
        self._arrays[key] = _key_array(key)
        self._size += size

    def _forget(self, key: TokenKey) -> None:
        size = self._entries.pop(key, None)
        if size is not None:
            self._size -= size
        self._arrays.pop(key, None)

    def _evict_to(self, limit: int) -> None:
        while self._entries and self._size > limit:
            oldest = next(iter(self._entries))
            self._forget(oldest)
            self._delete(oldest)

    # -- the cache API -----------------------------------------------------------------------

    def longest_prefix(self, tokens: Sequence[int]) -> tuple[TokenKey, int] | None:
        """The key sharing the longest common prefix with ``tokens`` and that length, or None
        when no key shares even one token. Does not change the recency order."""
        if not self._arrays or len(tokens) == 0:
            return None
        query = np.asarray(tokens, dtype=np.int64)
        best: TokenKey | None = None
        best_n = 0
        for key, arr in self._arrays.items():
            n = min(len(arr), len(query))
            if n <= best_n or arr[0] != query[0]:
                continue
            diff = np.flatnonzero(arr[:n] != query[:n])
            common = int(diff[0]) if diff.size else n
            if common > best_n:
                best, best_n = key, common
        if best is None:
            return None
        return best, best_n

    def get(self, key: Sequence[int]) -> bytes | None:
        """The state saved under ``key`` (it becomes the most recently used), or None. An
        entry that cannot be read back intact is removed and counts as a miss."""
        k = _as_key(key)
        if k not in self._entries:
            self.misses += 1
            return None
        data = self._read(k)
        if data is None:
            self.remove(k)
            self.misses += 1
            return None
        self._entries.move_to_end(k)
        self.hits += 1
        self._changed()
        return data

    def put(self, key: Sequence[int], data: bytes | bytearray | memoryview) -> bool:
        """Saves ``data`` under ``key``, evicting least recently used entries to make room.
        Returns False (and stores nothing) when the entry alone exceeds the capacity."""
        k = _as_key(key)
        blob = bytes(data)
        size = self.entry_size(k, blob)
        if k in self._entries:
            self._forget(k)
        if size > self._capacity:
            self._delete(k)
            self._changed()
            return False
        self._evict_to(self._capacity - size)
        self._write(k, blob)
        self._add(k, size)
        self._changed()
        return True

    def touch(self, key: Sequence[int]) -> bool:
        """Marks ``key`` as the most recently used; False when it is not cached."""
        k = _as_key(key)
        if k not in self._entries:
            return False
        self._entries.move_to_end(k)
        self._changed()
        return True

    def remove(self, key: Sequence[int]) -> bool:
        """Removes one entry; False when it was not cached."""
        k = _as_key(key)
        if k not in self._entries:
            return False
        self._forget(k)
        self._delete(k)
        self._changed()
        return True

    def clear(self) -> None:
        """Removes every entry."""
        for key in list(self._entries):
            self._forget(key)
            self._delete(key)
        self._changed()


class RAMPromptCache(PromptCache):
    """A prompt cache in this process's memory (default capacity 2 GiB)."""

    def __init__(self, capacity_bytes: int = 2 << 30) -> None:
        super().__init__(capacity_bytes)
        self._data: dict[TokenKey, bytes] = {}

    def __repr__(self) -> str:
        return f"<libllm.RAMPromptCache {len(self)} entries, {self.size_bytes} bytes>"

    def _read(self, key: TokenKey) -> bytes | None:
        return self._data.get(key)

    def _write(self, key: TokenKey, data: bytes) -> None:
        self._data[key] = data

    def _delete(self, key: TokenKey) -> None:
        self._data.pop(key, None)


# Entry file: magic, version, n_tokens (u32), data bytes (u64), blake2b-128 of tokens + data,
# then the tokens (int32 little-endian) and the data.
_MAGIC = b"LLMPCACH"
_VERSION = 1
_HEADER = struct.Struct("<8sII Q16s")
_INDEX = "index.json"
_SUFFIX = ".llmpc"


def _digest(tokens: bytes, data: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(tokens)
    h.update(data)
    return h.digest()


def _file_name(key: TokenKey) -> str:
    return hashlib.blake2b(_key_array(key).astype("<i4").tobytes(), digest_size=16).hexdigest() + (
        _SUFFIX
    )


class DiskPromptCache(PromptCache):
    """A prompt cache in a directory, kept across processes (default capacity 2 GiB).

    Each entry is one file (a header, its tokens and its state, with a checksum); the
    directory's ``index.json`` lists the entries in recency order. Every file is written
    under a temporary name and renamed into place, so an interrupted write leaves either the
    old file or the new one. Opening the directory drops index entries whose file is missing
    or has the wrong size and removes files that no index entry names (leftovers of
    interrupted writes); an unreadable index is rebuilt from the entry files. A damaged entry
    is found when it is read and then removed: a miss, never an error.

    One process at a time should write a directory (there is no locking).

    Args:
        directory: created if needed.
        capacity_bytes: see :class:`PromptCache`; entries beyond it are evicted on opening.
        fsync: flush each file to the disk before renaming it (durable across power loss).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        capacity_bytes: int = 2 << 30,
        *,
        fsync: bool = True,
    ) -> None:
        super().__init__(capacity_bytes)
        self.directory = os.fspath(directory)
        self._fsync = fsync
        os.makedirs(self.directory, exist_ok=True)
        self._open()

    def __repr__(self) -> str:
        return (
            f"<libllm.DiskPromptCache {self.directory!r} {len(self)} entries, "
            f"{self.size_bytes} bytes>"
        )

    # -- files -------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _write_file(self, name: str, parts: Sequence[bytes]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                for part in parts:
                    f.write(part)
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, self._path(name))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _read_header(self, path: str) -> tuple[TokenKey, int] | None:
        """(tokens, file size) of an entry file, checking its header only; None if bad."""
        try:
            with open(path, "rb") as f:
                head = f.read(_HEADER.size)
                if len(head) != _HEADER.size:
                    return None
                magic, version, n_tokens, n_data, _ = _HEADER.unpack(head)
                if magic != _MAGIC or version != _VERSION:
                    return None
                raw = f.read(4 * n_tokens)
                if len(raw) != 4 * n_tokens:
                    return None
                size = os.fstat(f.fileno()).st_size
        except OSError:
            return None
        if size != _HEADER.size + 4 * n_tokens + n_data:
            return None
        key = _as_key(np.frombuffer(raw, dtype="<i4").tolist())
        return key, size

    def _open(self) -> None:
        names = {
            n for n in os.listdir(self.directory) if n.endswith((_SUFFIX, ".part"))
        }
        loaded = self._load_index()
        if loaded is None:
            loaded = self._scan(names)
        kept: set[str] = set()
        for key, n_data in loaded:
            name = _file_name(key)
            try:
                size = os.path.getsize(self._path(name))
            except OSError:
                continue
            if name in kept or size != _HEADER.size + 4 * len(key) + n_data:
                continue
            kept.add(name)
            self._add(key, n_data + 4 * len(key))
        for name in names - kept:
            try:
                os.unlink(self._path(name))
            except OSError:
                pass
        self._evict_to(self._capacity)
        self._changed()

    def _load_index(self) -> list[tuple[TokenKey, int]] | None:
        try:
            with open(self._path(_INDEX), encoding="utf-8") as f:
                doc: Any = json.load(f)
            if doc.get("format") != "libllm-prompt-cache" or doc.get("version") != _VERSION:
                return None
            out: list[tuple[TokenKey, int]] = []
            for item in doc["entries"]:
                key = _as_key(item["tokens"])
                n_data = int(item["n_data"])
                if n_data < 0:
                    return None
                out.append((key, n_data))
            return out
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _scan(self, names: set[str]) -> list[tuple[TokenKey, int]]:
        """Index entries rebuilt from the entry files, oldest modification first."""
        found: list[tuple[float, TokenKey, int]] = []
        for name in names:
            if not name.endswith(_SUFFIX):
                continue
            path = self._path(name)
            head = self._read_header(path)
            if head is None or _file_name(head[0]) != name:
                continue
            key, size = head
            try:
                mtime = os.path.getmtime(path)
            except OSError:
                continue
            found.append((mtime, key, size - _HEADER.size - 4 * len(key)))
        found.sort(key=lambda item: item[0])
        return [(key, n_data) for _, key, n_data in found]

    # -- storage -----------------------------------------------------------------------------

    def _read(self, key: TokenKey) -> bytes | None:
        try:
            with open(self._path(_file_name(key)), "rb") as f:
                blob = f.read()
        except OSError:
            return None
        if len(blob) < _HEADER.size:
            return None
        magic, version, n_tokens, n_data, digest = _HEADER.unpack_from(blob)
        if magic != _MAGIC or version != _VERSION or n_tokens != len(key):
            return None
        start = _HEADER.size
        mid = start + 4 * n_tokens
        if len(blob) != mid + n_data:
            return None
        tokens, data = blob[start:mid], blob[mid:]
        if digest != _digest(tokens, data) or tokens != _key_array(key).astype("<i4").tobytes():
            return None
        return data

    def _write(self, key: TokenKey, data: bytes) -> None:
        tokens = _key_array(key).astype("<i4").tobytes()
        head = _HEADER.pack(_MAGIC, _VERSION, len(key), len(data), _digest(tokens, data))
        self._write_file(_file_name(key), [head, tokens, data])

    def _delete(self, key: TokenKey) -> None:
        try:
            os.unlink(self._path(_file_name(key)))
        except OSError:
            pass

    def _changed(self) -> None:
        entries = [
            {"tokens": list(key), "n_data": size - 4 * len(key)}
            for key, size in self._entries.items()
        ]
        doc = {"format": "libllm-prompt-cache", "version": _VERSION, "entries": entries}
        self._write_file(_INDEX, [json.dumps(doc, separators=(",", ":")).encode("utf-8")])

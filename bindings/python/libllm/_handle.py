"""The lifetime of one C handle, shared by Model, Context and Sampler."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._errors import ClosedError

if TYPE_CHECKING:
    from typing_extensions import Self

H = TypeVar("H", bound=ctypes.c_void_p)


class OwnedHandle(Generic[H]):
    """Owns a C handle: :meth:`close` frees it once (idempotent), ``with`` closes it, and so
    does garbage collection. Subclasses set ``_handle`` and ``_free_fn`` in ``__init__``."""

    _handle: H | None
    _free_fn: Any

    @property
    def closed(self) -> bool:
        return self._handle is None

    @property
    def handle(self) -> H:
        """The C handle; ClosedError after close()."""
        handle = self._handle
        if handle is None or self.closed:
            raise ClosedError(f"this {type(self).__name__} is closed")
        return handle

    def close(self) -> None:
        """Frees the handle. Idempotent."""
        handle = self._handle
        if handle is None:
            return
        self._handle = None
        self._free_fn(handle)
        self._after_close()

    def _after_close(self) -> None:
        """Runs once the handle is freed."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self.close()

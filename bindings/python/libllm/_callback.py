"""Python callables wrapped as llm_progress_fn, with exceptions carried back to the caller."""

from __future__ import annotations

from typing import Any, Callable

from . import _lib


class ProgressCallback:
    """Wraps ``fn(progress) -> keep_going`` as a C llm_progress_fn.

    An exception raised by ``fn`` must not unwind through C: it is stored, the C side is told
    to stop (false), and :meth:`reraise` raises it after the C call returns. The CFUNCTYPE
    object is kept here, so it lives as long as this wrapper.
    """

    def __init__(self, fn: Callable[[float], bool]) -> None:
        self._fn = fn
        self.error: BaseException | None = None
        self.c_func: Any = _lib.llm_progress_fn(self._call)

    def _call(self, progress: float, user_data: int | None) -> bool:
        if self.error is not None:
            return False
        try:
            return bool(self._fn(float(progress)))
        except BaseException as exc:  # noqa: BLE001 - carried back to the caller
            self.error = exc
            return False

    def reraise(self) -> None:
        """Raises (once) the exception the callable raised during the last C call, if any."""
        error, self.error = self.error, None
        if error is not None:
            raise error

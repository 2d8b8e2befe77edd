"""The store timing proxy: every store call timed into ``popbox_store_operation_seconds``.

``TimedStore`` wraps the store, ``TimedMaildrop`` each maildrop handle it opens.  Both
time a call the same way (``_Timer.run``); ``StoreError`` subclasses that are answers
rather than failures (an unknown user, a locked maildrop) are not counted as errors.
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from popbox.store.base import (
    MaildropHandle,
    Pending,
    StoreError,
    StorePermanentError,
    StoreTemporaryError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from popbox.observability.metrics import Metrics
    from popbox.store.base import MailStore

__all__ = ["TimedMaildrop", "TimedStore", "timed_store"]

_T = TypeVar("_T")


class _Timer(NamedTuple):
    """One operation's histogram and error counter (prometheus label children)."""

    seconds: Any
    errors: Any

    async def run(self, call: Awaitable[_T]) -> _T:
        start = time.perf_counter()
        try:
            return await call
        except StoreError as exc:
            self.count_failure(exc)
            raise
        finally:
            self.seconds.observe(time.perf_counter() - start)

    def count_failure(self, exc: StoreError) -> None:
        if isinstance(exc, StoreTemporaryError | StorePermanentError):
            self.errors.inc()


def _timer(metrics: Metrics, operation: str) -> _Timer:
    return _Timer(metrics.store_seconds.labels(operation), metrics.store_errors.labels(operation))


class TimedStore:
    """Wraps a store: every coroutine method is timed under its own name.

    Everything else (attributes, plain methods) passes straight through, so backends
    with extra capabilities keep them.
    """

    def __init__(self, store: MailStore, metrics: Metrics) -> None:
        self.wrapped = store
        self._metrics = metrics
        self._open = _timer(metrics, "open_maildrop")
        self._fetch = _timer(metrics, "fetch")
        self._commit = _timer(metrics, "commit")

    async def open_maildrop(self, name: str) -> MaildropHandle:
        """Timed as ``open_maildrop``; the handle's waits as ``fetch``, UPDATE as ``commit``."""
        handle = await self._open.run(self.wrapped.open_maildrop(name))
        return TimedMaildrop(handle, self._fetch, self._commit)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.wrapped, name)
        if not inspect.iscoroutinefunction(attribute):
            if inspect.ismethod(attribute):
                setattr(self, name, attribute)  # later lookups skip __getattr__
            return attribute
        timer = _timer(self._metrics, name)

        @functools.wraps(attribute)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            return await timer.run(attribute(*args, **kwargs))

        setattr(self, name, timed)  # later lookups skip __getattr__
        return timed


class TimedMaildrop:
    """A ``MaildropHandle`` whose reads and commit a ``TimedStore`` times."""

    __slots__ = ("_commit", "_fetch", "messages", "wrapped")

    def __init__(self, handle: MaildropHandle, fetch: _Timer, commit: _Timer) -> None:
        self.wrapped = handle
        self.messages = handle.messages
        self._fetch = fetch
        self._commit = commit

    def body_now(self, uid: int) -> bytes | Pending | None:
        """Failures count as ``fetch`` errors; answers are not timed.

        This is the RETR hot path: most answers come from a copy read ahead, and two
        clock reads and a histogram observation would cost more than the answer.
        """
        try:
            return self.wrapped.body_now(uid)
        except StoreError as exc:
            self._fetch.count_failure(exc)
            raise

    async def body(self, uid: int) -> bytes | None:
        return await self._fetch.run(self.wrapped.body(uid))

    async def commit(self, deleted: Sequence[int], retrieved: Sequence[int], at: float) -> int:
        return await self._commit.run(self.wrapped.commit(deleted, retrieved, at))

    async def close(self) -> None:
        await self.wrapped.close()


def timed_store(store: MailStore, metrics: Metrics) -> MailStore:
    """``store`` behind a ``TimedStore`` (which has every method of the store it wraps)."""
    return cast("MailStore", TimedStore(store, metrics))

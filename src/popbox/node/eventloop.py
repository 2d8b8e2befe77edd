"""The event loop the server runs on: uvloop when it is installed, asyncio's own otherwise.

uvloop (the optional ``fast`` extra: ``pip install 'popbox[fast]'``) runs the same
asyncio code on libuv, with transports written in Cython: on the RETR and login paths
the loop and the socket transports are a large part of the CPU time a session costs, so
it is used whenever it can be imported.  Nothing else depends on it, and the test suite
runs on the standard loop.

Its transports do not derive from ``asyncio.Transport`` (they implement the same
methods), so code receiving a transport must not check its class.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

__all__ = ["loop_name", "run"]

_T = TypeVar("_T")


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)``, on uvloop when installed."""
    try:
        import uvloop  # noqa: PLC0415 - optional dependency, looked up when the server starts
    except ImportError:
        return asyncio.run(main)
    result: _T = uvloop.run(main)
    return result


def loop_name() -> str:
    """Which loop ``run`` uses, for the startup log."""
    try:
        return f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        return "asyncio"

"""STLS's TLS upgrade (RFC 2595 section 4): the handshake and the protocol behind TLS.

After ``STLS`` is accepted the session's own ``data_received`` drops everything (the
plaintext a client pipelined behind STLS must never reach the TLS session), and the
decrypted bytes come through a ``TlsSide`` instead.  A client's first command right after
its handshake (curl sends CAPA at once) can arrive before ``start_tls`` returns; the
``TlsSide`` keeps such bytes (``early``) until the session knows TLS is up and asks for
them with ``ready``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    import structlog

__all__ = ["TlsSide", "upgrade"]


class TlsSide(asyncio.Protocol):
    """The protocol behind the TLS layer after STLS: hands what it gets to the session."""

    def __init__(
        self,
        feed: Callable[[bytes], None],
        eof: Callable[[], object],
        lost: Callable[[Exception | None], None],
        pause: Callable[[], None],
        resume: Callable[[], None],
    ) -> None:
        self._feed = feed
        self._eof = eof
        self._lost = lost
        self._pause = pause
        self._resume = resume
        self.early: bytearray | None = bytearray()  # None once the session takes input

    def ready(self) -> bytes:
        """The session knows TLS is up: returns what came early; the rest goes straight on."""
        early, self.early = self.early, None
        return bytes(early or b"")

    def data_received(self, data: bytes) -> None:
        if self.early is not None:
            self.early += data  # the handshake just finished; see the module docstring
        else:
            self._feed(data)

    def eof_received(self) -> bool:
        self._eof()
        return False  # asyncio's TLS layer closes the connection after EOF in any case

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    def pause_writing(self) -> None:
        self._pause()

    def resume_writing(self) -> None:
        self._resume()


async def upgrade(
    transport: asyncio.Transport,
    side: TlsSide,
    context: ssl.SSLContext,
    log: structlog.typing.FilteringBoundLogger,
    *,
    handshake_timeout: float,
) -> asyncio.Transport | None:
    """Run the server side of the handshake, for at most ``handshake_timeout`` seconds (the
    ``pop3.tls_handshake_timeout`` setting); None: it failed and the connection is gone."""
    try:
        upgraded = await asyncio.get_running_loop().start_tls(
            transport, side, context, server_side=True, ssl_handshake_timeout=handshake_timeout
        )
    except (OSError, ConnectionError, TimeoutError) as exc:
        log.info("stls_failed", error=type(exc).__name__)
        transport.abort()
        return None
    return upgraded

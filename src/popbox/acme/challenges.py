"""The HTTP-01 challenge listener (RFC 8555 section 8.3), on popbox's own event loop.

The CA fetches ``http://<domain>/.well-known/acme-challenge/<token>`` and expects the
key authorization as the body.  The ACME client runs in a thread and publishes tokens
into a ``ChallengeTokens`` (a lock guards it: the thread writes, the event loop reads);
the listener answers from it and gives 404 for anything else.  It runs for the life of
the process, so the port is claimed (and a clash reported) at start, not at the first
renewal months later.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from aiohttp import web

from popbox.config import parse_address
from popbox.net.bind import ListenError, address_of, bind_socket

if TYPE_CHECKING:
    import socket

__all__ = ["CHALLENGE_PATH", "ChallengeListener", "ChallengeTokens"]

CHALLENGE_PATH = "/.well-known/acme-challenge/"
_KEY = "tls.acme_http_listen"


class ChallengeTokens:
    """token -> key authorization, shared by the ACME thread and the listener."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}

    def publish(self, token: str, key_authorization: str) -> None:
        with self._lock:
            self._tokens[token] = key_authorization

    def withdraw(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def get(self, token: str) -> str | None:
        with self._lock:
            return self._tokens.get(token)


class ChallengeListener:
    """Serves the published tokens over plain HTTP on ``tls.acme_http_listen``."""

    def __init__(self, tokens: ChallengeTokens) -> None:
        self._tokens = tokens
        app = web.Application()
        app.router.add_get(CHALLENGE_PATH + "{token}", self._answer)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.addresses: list[tuple[str, int]] = []

    async def start(self, address: str) -> None:
        """Bind and serve; raises ``ListenError`` naming the key when the address is taken."""
        host, port = parse_address(address, _KEY)
        try:
            sockets: list[socket.socket] = bind_socket(host, port)
        except OSError as exc:
            raise ListenError(_KEY, address, exc) from exc
        await self._runner.setup()
        for sock in sockets:
            site = web.SockSite(self._runner, sock)
            await site.start()
            self.addresses.append(address_of(sock))

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        key_authorization = self._tokens.get(request.match_info["token"])
        if key_authorization is None:
            raise web.HTTPNotFound
        # RFC 8555 s8.3: the body is the key authorization (ASCII base64url and a dot).
        return web.Response(body=key_authorization.encode("ascii"), content_type="text/plain")

"""Listening sockets: binding the configured addresses, and how a ``listening`` line names one.

POP3 and LMTP bind through the same functions, in the supervisor when there are several
workers (which then all accept on the same sockets: see ``node/supervisor.py``) or in the
one process that serves.  TCP addresses give one socket per resolved address; an LMTP
address may also be a unix socket path, open to the MTA's delivery agent.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from popbox.config import parse_address

if TYPE_CHECKING:
    from popbox.config import Config

__all__ = [
    "BACKLOG",
    "Address",
    "Bound",
    "ListenError",
    "Listening",
    "address_of",
    "bind_listeners",
    "bind_socket",
    "bind_unix_listener",
]

Bound = tuple[str, socket.socket]  # ("pop3s", listening socket)
Listening = tuple[str, str, int]  # (kind, host, port): ("pop3s", "127.0.0.1", 995)
Address = tuple[str, int]
BACKLOG = 1024
UNIX_SOCKET_MODE = 0o666  # the MTA's delivery agent runs as its own user (as Dovecot's)


class ListenError(OSError):
    """A configured address cannot be listened on; the message names the key and address."""

    def __init__(self, key: str, address: str, cause: OSError) -> None:
        if cause.errno and not isinstance(cause, socket.gaierror):
            # The plain errno text: uvloop's strerror repeats the address in other words.
            reason = os.strerror(cause.errno)
        else:  # a resolver error's own text, or a message without an errno
            reason = cause.strerror or str(cause).removeprefix(f"{key}: ")
        super().__init__(cause.errno, f"{key}: cannot listen on {address}: {reason}")

    def __str__(self) -> str:
        return str(self.strerror)


def bind_socket(host: str, port: int) -> list[socket.socket]:
    """Listening, non-blocking TCP sockets for ``host:port`` (one per resolved address)."""
    sockets: list[socket.socket] = []
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)  # noqa: FBT003 - the socket API's own signature
            # A port of 0 resolved on the first address is reused for the next ones.
            port = sock.getsockname()[1]
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def bind_unix_listener(path: Path) -> socket.socket:
    """A listening, non-blocking unix socket at ``path`` the MTA may connect to."""
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(BACKLOG)
        sock.setblocking(False)  # noqa: FBT003 - the socket API's own signature
        path.chmod(UNIX_SOCKET_MODE)
    except OSError:
        sock.close()
        raise
    return sock


def _remove_stale_socket(path: Path) -> None:
    # A socket left by a process that died; anything else at that path is not ours.
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"lmtp.listen: {path} exists and is not a socket")
    path.unlink()


def address_of(sock: socket.socket) -> Address:
    """What a ``listening`` line shows: host (IPv6 in brackets) and the real port.

    A unix socket gives ``("unix:/path", -1)``.
    """
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}", -1
    host, port = sock.getsockname()[:2]
    return (f"[{host}]" if ":" in host else host), port


def bind_listeners(config: Config, *, pop3: bool = True, lmtp: bool = False) -> list[Bound]:
    """Bind the POP3 listeners of the configuration (and with ``lmtp``, the LMTP ones)."""
    bound: list[Bound] = []
    try:
        for kind, key, addresses in (
            ("pop3", "pop3.listen", config.pop3.listen if pop3 else ()),
            ("pop3s", "pop3.tls_listen", config.pop3.tls_listen if pop3 else ()),
            ("lmtp", "lmtp.listen", config.lmtp.listen if lmtp else ()),
        ):
            for address in addresses:
                host, port = parse_address(address, key, allow_unix=kind == "lmtp")
                try:
                    if port < 0:
                        bound.append((kind, bind_unix_listener(Path(host))))
                    else:
                        bound.extend((kind, sock) for sock in bind_socket(host, port))
                except OSError as exc:
                    raise ListenError(key, address, exc) from exc
    except OSError:
        for _, sock in bound:
            sock.close()
        raise
    return bound

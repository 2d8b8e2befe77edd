"""The live sessions of one process as an operator sees them: list, kick, watch.

The admin API (``admin/``) reaches sessions only through these functions: directly in a
single-process server, and over the control channel in a worker (``node/worker.py``),
where the supervisor asks every worker and adds up the answers (``node/admin_bridge.py``).

Watching a user copies the protocol lines of that user's logged-in sessions (the same
lines as ``server.protocol_log_users`` logs: client lines and server status lines, never
USER/PASS/AUTH, a message body or a listing line) to a sink, from sessions running now
and from those that log in later, until the user is no longer watched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from popbox.server.context import ServerContext
    from popbox.server.session import Pop3Protocol

__all__ = ["describe_sessions", "kick", "set_watched"]


def _sessions(context: ServerContext) -> list[Pop3Protocol]:
    return list(context.sessions)


def describe_sessions(context: ServerContext) -> list[dict[str, object]]:
    """Every live session's description, oldest first."""
    found = [session.describe() for session in _sessions(context)]
    return sorted(found, key=lambda described: (described["since"], str(described["id"])))


def kick(context: ServerContext, *, session: str | None = None, user: str | None = None) -> int:
    """Close the session with id ``session``, or every session of ``user``; how many.

    Each gets one -ERR line saying an administrator closed it, and no UPDATE.
    """
    kicked = 0
    for live in _sessions(context):
        described = live.describe()
        if (session is not None and described["id"] == session) or (
            user is not None and described["user"] == user
        ):
            live.kick()
            kicked += 1
    return kicked


def set_watched(
    context: ServerContext, users: Iterable[str], sink: Callable[[dict[str, Any]], None]
) -> None:
    """Watch exactly ``users`` from now on: their lines go to ``sink``, others' to nobody."""
    wanted = set(users)
    context.protocol_taps = dict.fromkeys(wanted, sink)
    for live in _sessions(context):
        user = live.describe()["user"]
        live.observer.tap(sink if user in wanted else None)

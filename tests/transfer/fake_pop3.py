"""A POP3 source that misbehaves on purpose: drops the connection, answers -ERR, lists
unique-ids RFC 1939 does not allow.  Real servers do not do these on demand; the import
must survive each.

``FakeSource(messages)`` serves ``(unique-id octets or None, CRLF message)`` pairs on an
ephemeral 127.0.0.1 port in the running event loop; ``commands`` records every command
it was sent, so a test can check that nothing was deleted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

TIMEOUT = 10.0


@dataclass
class FakeSource:
    messages: list[tuple[bytes | None, bytes]]
    uidl: bool = True
    drop_at_retr: set[int] = field(default_factory=set)  # RETR numbers: close instead
    err_at_retr: set[int] = field(default_factory=set)  # RETR numbers: -ERR
    uidl_answer: bytes | None = None  # sent to UIDL instead of the real listing
    commands: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> FakeSource:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"pop3://127.0.0.1:{self.port}"

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK fake\r\n")
        try:
            while line := await asyncio.wait_for(reader.readline(), TIMEOUT):
                command = line.decode().strip()
                self.commands.append(command)
                reply = self._answer(command)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if command == "QUIT":
                    break
        finally:
            writer.close()

    def _answer(self, command: str) -> bytes | None:  # noqa: PLR0911 - one per command
        verb, _, argument = command.partition(" ")
        if verb in {"USER", "PASS", "QUIT", "NOOP"}:
            return b"+OK\r\n"
        if verb == "CAPA":
            uidl = b"UIDL\r\n" if self.uidl else b""
            return b"+OK\r\nUSER\r\nPIPELINING\r\n" + uidl + b".\r\n"
        if verb == "UIDL" and self.uidl_answer is not None:
            return self.uidl_answer
        if verb == "UIDL" and self.uidl:
            lines = [
                b"%d %s\r\n" % (n, uidl)
                for n, (uidl, _) in enumerate(self.messages, 1)
                if uidl is not None
            ]
            return b"+OK\r\n" + b"".join(lines) + b".\r\n"
        if verb == "LIST":
            lines = [b"%d %d\r\n" % (n, len(m)) for n, (_, m) in enumerate(self.messages, 1)]
            return b"+OK\r\n" + b"".join(lines) + b".\r\n"
        if verb == "RETR":
            number = int(argument)
            if number in self.drop_at_retr:
                self.drop_at_retr.discard(number)  # once: the next run gets it
                return None
            if number in self.err_at_retr:
                self.err_at_retr.discard(number)
                return b"-ERR [SYS/TEMP] try later\r\n"
            body = self.messages[number - 1][1].replace(b"\r\n.", b"\r\n..")
            body = b"." + body if body.startswith(b".") else body
            return b"+OK\r\n" + body + b".\r\n"
        return b"-ERR unknown command\r\n"

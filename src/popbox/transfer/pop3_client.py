"""A read-only POP3 client for importing from another server (RFC 1939, 2595, 5034).

Why not ``poplib``: it refuses any line longer than 2048 octets (``poplib._MAXLINE``,
"line too long"), which real mail has (base64 without line breaks, long HTML lines), and
``retr`` returns the message as a list of lines built by a Python loop.  This client reads
a whole multi-line answer by searching its own buffer for the terminator (in C, from
where the last search stopped), and hands the answer on still byte-stuffed, which is how
popbox stores it (``message.prepare_stuffed``): the import is bound by the source, not
by the client.

The client can only read: it has no DELE, so QUIT never removes anything (nothing can
have been marked).  Every network operation has a timeout.  Failures are ``SourceError``
with one line naming the problem; ``SourceLost`` (a subclass) means the connection went
away mid-run, which the importer treats as "stop here, the next run continues".
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from popbox.store.spooled import WireSpool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from popbox.store.spooled import SpooledWire

__all__ = ["Credentials", "Pop3Client", "Pop3Url", "SourceError", "SourceLost", "tls_context"]

_TERMINATOR = b"\r\n.\r\n"
_READ_SIZE = 256 * 1024
# RETR commands in flight with PIPELINING: enough that the source always has the next
# few small messages to send while the client stores one (4 left Dovecot waiting on the
# client between 2 kB messages); the answers themselves wait in TCP's buffers.
_PIPELINE = 32
_LINE_LIMIT = 8192  # status lines and listing lines; RFC 1939 allows 512 octets
_LISTING_LIMIT = 1_000_000  # lines of a UIDL/LIST answer: more is not a mailbox
Auth = Literal["auto", "user", "plain"]


class SourceError(Exception):
    """The source server cannot be used; the text names the problem in one line."""


class SourceLost(SourceError):
    """The connection to the source broke mid-run; what was imported stays."""


@dataclass(frozen=True, slots=True)
class Pop3Url:
    """``pop3s://host[:port]`` (implicit TLS, port 995) or ``pop3://host[:port]`` (110)."""

    host: str
    port: int
    implicit_tls: bool

    @classmethod
    def parse(cls, text: str) -> Pop3Url:
        parts = urlsplit(text)
        if parts.scheme not in {"pop3", "pop3s"} or not parts.hostname:
            raise SourceError(f"{text!r} is not a pop3:// or pop3s:// URL with a host")
        if parts.username or parts.password or parts.path not in {"", "/"}:
            raise SourceError(f"{text!r}: give the login with --login, not in the URL")
        try:
            port = parts.port
        except ValueError:
            raise SourceError(f"{text!r}: the port is not a number from 1 to 65535") from None
        implicit = parts.scheme == "pop3s"
        return cls(parts.hostname, port or (995 if implicit else 110), implicit)

    def __str__(self) -> str:
        return f"{'pop3s' if self.implicit_tls else 'pop3'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who logs in: ``login``'s mailbox, by ``login``'s password or a master user's."""

    login: str
    password: str
    master_user: str | None = None
    master_separator: str = "*"  # Dovecot's auth_master_user_separator
    auth: Auth = "auto"


def tls_context(cafile: Path | None, *, insecure: bool) -> ssl.SSLContext:
    """Verification on by default (system CAs, or only ``cafile``); off only if asked."""
    if insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


class Pop3Client:
    """One logged-in connection; ``await Pop3Client.connect(...)``, then ``quit()``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        reader_limit: int,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self._reader_limit = reader_limit
        self._pending = bytearray()  # received, not yet parsed
        self._outstanding = 0  # commands sent whose answer was not read
        self.capabilities: set[str] = set()

    @classmethod
    async def connect(
        cls,
        url: Pop3Url,
        tls: ssl.SSLContext,
        *,
        allow_plaintext: bool = False,
        io_timeout: float = 60.0,
        max_message_size: int = 50 * 1024 * 1024,
    ) -> Pop3Client:
        """Connect, read the greeting, STLS on pop3:// (required unless allowed not to)."""
        # A dot-stuffed answer is at most twice the message; the reader must hold one.
        limit = 2 * max_message_size + 65536
        where = f"{url.host} port {url.port}"
        try:
            async with asyncio.timeout(io_timeout):
                reader, writer = await asyncio.open_connection(
                    url.host,
                    url.port,
                    ssl=tls if url.implicit_tls else None,
                    server_hostname=url.host if url.implicit_tls else None,
                )
        except ssl.SSLError as exc:
            raise SourceError(f"TLS with {where} failed: {exc.reason or exc}") from None
        except TimeoutError:
            raise SourceError(f"cannot reach {where}: no answer in {io_timeout:g} s") from None
        except OSError as exc:
            raise SourceError(f"cannot reach {where}: {exc.strerror or exc}") from None
        client = cls(reader, writer, io_timeout, limit)
        try:
            await client._expect_ok("greeting")
            await client._read_capabilities()
            if not url.implicit_tls:
                await client._starttls(url, tls, allow_plaintext=allow_plaintext)
        except BaseException:
            client.close()
            raise
        return client

    async def _starttls(self, url: Pop3Url, tls: ssl.SSLContext, *, allow_plaintext: bool) -> None:
        if "STLS" not in self.capabilities:
            if allow_plaintext:
                return
            raise SourceError(
                f"{url.host} does not offer STLS: use pop3s://, or --allow-plaintext"
                " to send the password unencrypted"
            )
        await self._command("STLS")
        if self._pending:
            # RFC 2595 s4 / CVE-2011-0411: anything sent before the handshake would be
            # read as if it had come over TLS.
            raise SourceError(f"{url.host} sent data after its STLS answer: refusing it")
        try:
            async with asyncio.timeout(self._timeout):
                await self._writer.start_tls(tls, server_hostname=url.host)
        except ssl.SSLError as exc:
            raise SourceError(f"TLS with {url.host} failed: {exc.reason or exc}") from None
        except (TimeoutError, OSError) as exc:
            raise SourceError(f"TLS with {url.host} failed: {exc}") from None
        await self._read_capabilities()  # RFC 2595 s4: forget what was said before TLS

    async def _read_capabilities(self) -> None:
        self.capabilities = set()
        if (await self._send("CAPA")).startswith(b"+OK"):
            for line in (await self._multiline("CAPA")).split(b"\r\n"):
                words = line.decode("ascii", "replace").upper().split()
                if words:
                    self.capabilities.add(words[0])
                    if words[0] == "SASL":
                        self.capabilities.update(f"SASL:{m}" for m in words[1:])

    async def login(self, credentials: Credentials) -> None:
        """USER/PASS or AUTH PLAIN (RFC 5034), as a master user when one is given."""
        auth = credentials.auth
        if auth == "auto":
            auth = "plain" if "SASL:PLAIN" in self.capabilities else "user"
        master = credentials.master_user
        if auth == "plain":
            # RFC 4616: authorization identity (the mailbox), authentication identity.
            authzid, authcid = (credentials.login, master) if master else ("", credentials.login)
            token = f"{authzid}\0{authcid}\0{credentials.password}".encode()
            encoded = base64.b64encode(token).decode("ascii")
            reply = await self._send("AUTH PLAIN " + encoded)
            if reply == b"+" or reply.startswith(b"+ "):
                # A server that ignores the initial response asks again (RFC 5034 s4).
                reply = await self._send(encoded)
        else:
            user = credentials.login
            if master:
                user = f"{user}{credentials.master_separator}{master}"
            reply = await self._send(f"USER {user}")
            if reply.startswith(b"+OK"):
                reply = await self._send(f"PASS {credentials.password}")
        if not reply.startswith(b"+OK"):
            who = f"{credentials.login} (as {master})" if master else credentials.login
            raise SourceError(f"login as {who} refused: {_text(reply)}")

    async def uidl(self) -> list[tuple[int, bytes]] | None:
        """``(number, unique-id octets)`` per message; None if the source has no UIDL."""
        if not (await self._send("UIDL")).startswith(b"+OK"):
            return None
        return [(n, rest) for n, rest in await self._listing("UIDL")]

    async def list_sizes(self) -> list[tuple[int, int]]:
        """``(number, size)`` per message, in message-number order."""
        await self._command("LIST")
        sizes = []
        for number, rest in await self._listing("LIST"):
            size = rest.split(b" ", 1)[0]
            if not size.isdigit():
                raise SourceError(f"malformed LIST answer for message {number}: {_text(rest)}")
            sizes.append((number, int(size)))
        return sizes

    async def retrieve(
        self, numbers: Sequence[int], spool_dir: Path | None = None
    ) -> AsyncIterator[tuple[int, bytes | SpooledWire]]:
        """``(number, answer)`` of each message in turn, as sent: still byte-stuffed.

        With PIPELINING (RFC 2449 s6.6) up to ``_PIPELINE`` RETR commands are in flight,
        sent half a window at a time, so the source never waits for the client between
        two messages; the answers are
        still read one at a time.  An answer larger than ``store.spooled.PIECE`` goes to
        a temporary file in ``spool_dir`` as it arrives (the caller closes it), so memory
        holds a piece of one message however large it is (TCP holds back the rest).
        Raises ``SourceError`` on ``-ERR``.
        """
        window = _PIPELINE if "PIPELINING" in self.capabilities else 1
        sent = 0
        for received, number in enumerate(numbers):
            if sent - received <= window // 2:
                # Topped up by half a window at a time: one write, one segment, for many.
                more = numbers[sent : received + window]
                self._writer.write(b"".join(b"RETR %d\r\n" % n for n in more))
                sent += len(more)
                self._outstanding += len(more)
            await self._drain(f"RETR {number}")
            status = await self._readline(f"RETR {number}")
            self._outstanding -= 1
            if not status.startswith(b"+OK"):
                raise SourceError(f"the source answered -ERR to RETR {number}: {_text(status)}")
            yield number, await self._body(f"RETR {number}", spool_dir)

    async def quit(self) -> None:
        """QUIT (nothing was marked for deletion: this client cannot mark) and close.

        With answers still outstanding (a run stopped inside a pipeline) the connection
        is only closed: without QUIT a POP3 server never enters UPDATE (RFC 1939 s6),
        and nothing was marked anyway.
        """
        try:
            if not self._outstanding:
                await self._send("QUIT")
        except SourceError:
            pass  # the import is complete either way; the source ends the session
        finally:
            self.close()

    def close(self) -> None:
        self._writer.close()

    # -- the wire -----------------------------------------------------------------------

    async def _command(self, line: str) -> bytes:
        reply = await self._send(line)
        if not reply.startswith(b"+OK"):
            raise SourceError(f"the source refused {line.split(maxsplit=1)[0]}: {_text(reply)}")
        return reply

    async def _expect_ok(self, what: str) -> None:
        reply = await self._readline(what)
        if not reply.startswith(b"+OK"):
            raise SourceError(f"not a POP3 server ({what}: {_text(reply)})")

    async def _send(self, line: str) -> bytes:
        verb = line.split(maxsplit=1)[0]
        self._writer.write(line.encode("utf-8") + b"\r\n")
        await self._drain(verb)
        return await self._readline(verb)

    async def _drain(self, what: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            raise SourceLost(f"connection to the source lost sending {what}") from exc

    async def _fill(self, what: str) -> None:
        """Read what the source has sent next into the buffer."""
        try:
            async with asyncio.timeout(self._timeout):
                chunk = await self._reader.read(_READ_SIZE)
        except (OSError, TimeoutError) as exc:
            raise SourceLost(f"connection to the source lost during {what}: {exc}") from None
        if not chunk:
            raise SourceLost(f"the source closed the connection during {what}")
        self._pending += chunk

    async def _readline(self, what: str) -> bytes:
        searched = 0
        while (end := self._pending.find(b"\n", searched)) < 0:
            if len(self._pending) > _LINE_LIMIT:
                raise SourceError(f"malformed answer to {what}: a line without end")
            searched = len(self._pending)
            await self._fill(what)
        line = bytes(self._pending[:end]).rstrip(b"\r")
        del self._pending[: end + 1]
        return line

    async def _multiline(self, what: str) -> bytes:
        """The lines of a multi-line answer, still dot-stuffed, ending in CRLF (or empty)."""
        # The status line's CRLF came before: the answer ends at CRLF "." CRLF within
        # it, or at once if its first line is the "." alone.  One search over the
        # buffer (in C), from where the last one stopped.
        searched = 0
        while True:
            if self._pending.startswith(b".\r\n"):
                del self._pending[:3]
                return b""
            if len(self._pending) >= len(b".\r\n"):
                end = self._pending.find(_TERMINATOR, searched)
                if end >= 0:
                    with memoryview(self._pending) as view:
                        answer = bytes(view[: end + 2])  # one copy, not two
                    # A fresh buffer for what follows: the one a big answer grew is freed.
                    self._pending = self._pending[end + len(_TERMINATOR) :]
                    return answer
                searched = max(0, len(self._pending) - len(_TERMINATOR) + 1)
            if len(self._pending) > self._reader_limit:
                raise SourceError(f"malformed answer to {what}: no end within the limit")
            await self._fill(what)

    async def _body(self, what: str, spool_dir: Path | None) -> bytes | SpooledWire:
        """A multi-line answer as ``_multiline`` gives it, spooled when it is large."""
        while len(self._pending) < len(b".\r\n"):
            await self._fill(what)
        end = self._pending.find(_TERMINATOR)
        if end >= 0 or self._pending.startswith(b".\r\n"):
            return await self._multiline(what)  # all here already: the common case
        spool = WireSpool(spool_dir)
        try:
            # Everything but the last four octets, which may begin the terminator.
            while (end := self._pending.find(_TERMINATOR)) < 0:
                cut = len(self._pending) - len(_TERMINATOR) + 1
                if cut > 0:
                    with memoryview(self._pending) as view:
                        spool.write(view[:cut])
                    del self._pending[:cut]
                if len(spool) > self._reader_limit:
                    raise SourceError(f"malformed answer to {what}: no end within the limit")
                await self._fill(what)
            with memoryview(self._pending) as view:
                spool.write(view[: end + 2])
            del self._pending[: end + len(_TERMINATOR)]
            return spool.finish()
        except OSError as exc:
            raise SourceError(f"cannot keep the answer to {what}: {exc}") from None
        finally:
            spool.close()

    async def _listing(self, what: str) -> list[tuple[int, bytes]]:
        lines = (await self._multiline(what)).split(b"\r\n")[:-1]
        if len(lines) > _LISTING_LIMIT:
            raise SourceError(f"{what} lists {len(lines)} messages: more than popbox imports")
        found = []
        for line in _unstuff_lines(lines):
            number, _, rest = line.partition(b" ")
            if not number.isdigit():
                raise SourceError(f"malformed {what} line: {_text(line)}")
            found.append((int(number), rest))
        return found


def _unstuff_lines(lines: list[bytes]) -> list[bytes]:
    return [line[1:] if line.startswith(b"..") else line for line in lines]


def _text(reply: bytes) -> str:
    return reply.decode("utf-8", "replace")[:200] or "(empty answer)"

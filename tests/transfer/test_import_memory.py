"""``popbox import pop3`` holds a bounded part of a message in memory, whatever its size.

The issue's bar: peak memory independent of message size.  A real Dovecot serves one
50 MiB message; the whole ``popbox import pop3`` command imports it into SQLite and into
PostgreSQL, and its peak resident set (``VmHWM`` in ``/proc/PID/status``) stays below
the message's size plus 40 MiB.
Holding the message even twice (a receive buffer and the value the store inserts)
passes above that bound; the import used to peak at about four times the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dovecot_pop3 import DovecotPop3, big_message, raw_listing
from popbox.cli.support import open_configured_store
from popbox.config import load
from popbox_cli import popbox_command
from popbox_servers import USERS

sys.path.insert(0, str(Path(__file__).parent.parent / "ops"))
from pg_helpers import ThrowawayDatabase, shared_server_dsn

if TYPE_CHECKING:
    from collections.abc import Iterator

    from popbox_servers import TlsFiles

MESSAGE_SIZE = 50 * 1024 * 1024
HEADROOM = 40 * 1024 * 1024  # the interpreter, the libraries, the listing, the buffers
TIMEOUT = 300.0


@pytest.fixture(scope="module")
def dovecot(tls_files: TlsFiles) -> Iterator[DovecotPop3]:
    server = DovecotPop3.start({"alice": (USERS["alice"], [big_message(MESSAGE_SIZE)])}, tls_files)
    yield server
    server.stop()


def run_measured(args: list[str], stdin: str, out: Path) -> tuple[int, int, str]:
    """Exit status, peak RSS in octets and the output of one command run to its end.

    ``VmHWM`` is the kernel's high-water mark of the process's resident set, so the
    last value read before it ends is its peak up to then; it is read every 50 ms.
    (``wait4``'s ``ru_maxrss`` would be simpler, but it carries over the high-water
    mark of the forking process, this test's, across the exec.)
    """
    with (out / "stdin").open("w+") as given, (out / "output").open("w+") as output:
        given.write(stdin)
        given.seek(0)
        process = subprocess.Popen(args, stdin=given, stdout=output, stderr=subprocess.STDOUT)
        status_file = Path(f"/proc/{process.pid}/status")
        deadline = time.monotonic() + TIMEOUT
        peak = 0
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait(30)
                pytest.fail(f"{args[1:3]} did not end in {TIMEOUT:g} s")
            with contextlib.suppress(OSError):  # ended between poll() and the read
                for line in status_file.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
            time.sleep(0.05)
        output.seek(0)
        return process.returncode, peak, output.read()


async def _stored_bodies(config: Path) -> list[bytes | None]:
    store = await open_configured_store(load(config))
    try:
        return [await store.fetch("alice", info.uid) for info in await store.snapshot("alice")]
    finally:
        await store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_import_of_a_50_mib_message_peaks_below_its_size_plus_40_mib(
    dovecot: DovecotPop3, tls_files: TlsFiles, tmp_path: Path, backend: str
) -> None:
    config = tmp_path / "popbox.toml"
    # 50 MiB of text is 51 MiB with CRLF line ends: over the default max_message_size.
    text = f'data_dir = "{tmp_path / "data"}"\n[lmtp]\nmax_message_size = {2 * MESSAGE_SIZE}\n'
    database = None
    if backend == "postgresql":
        database = ThrowawayDatabase(shared_server_dsn())
        text += f'[storage]\nbackend = "postgresql"\ndsn = "{database.dsn}"\n'
    config.write_text(text)
    command = [popbox_command(), "user", "add", "alice", "--config", str(config)]
    try:
        added = subprocess.run(
            [*command, "--password-stdin"], input="secret\n", capture_output=True, text=True,
            timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        args = [popbox_command(), "import", "pop3", "--config", str(config), "alice"]
        args += [dovecot.url(), "--cafile", str(tls_files.ca_file), "--password-stdin"]
        status, peak, output = run_measured(args, USERS["alice"] + "\n", tmp_path)
        assert status == 0, output
        assert "imported 1 of 1 messages" in output
        assert peak < MESSAGE_SIZE + HEADROOM, f"peak RSS {peak / 2**20:.0f} MiB"
        source = raw_listing(dovecot.tls_port, "alice", USERS["alice"], tls_files.ca_file)
        stored = asyncio.run(_stored_bodies(config))
        assert stored == source["retr"]  # the octets RETR sends, dot-lines and all
    finally:
        if database is not None:
            database.drop()

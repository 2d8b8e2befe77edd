"""The Exchange-style protocol log ([protocol_log]): layout, every session, redaction,
rotation under load, a full disk (TechNet dd335141, "Protocol logging for POP3 and IMAP4")."""

from __future__ import annotations

import base64
import csv
import poplib
import threading
import time
from typing import TYPE_CHECKING

import pytest
import structlog

import tmpfs
from popbox.observability.protocol_log import FIELDS, ProtocolLog
from popbox_servers import USERS

if TYPE_CHECKING:
    from pathlib import Path

TIMEOUT = 10.0
BODY_LINE = b"this body line must never reach the protocol log"
HOUR = 3600.0


def rows(directory: Path) -> list[dict[str, str]]:
    """Every event row of every file, with the file it came from."""
    found: list[dict[str, str]] = []
    for path in sorted(directory.glob("POP3*.LOG")):
        text = path.read_text(encoding="utf-8")
        body = [line for line in text.splitlines() if not line.startswith("#")]
        found.extend(
            {**dict(zip(FIELDS, row, strict=True)), "file": path.name} for row in csv.reader(body)
        )
    return found


def wait_for(directory: Path, done, deadline: float = TIMEOUT) -> list[dict[str, str]]:
    """Rows once ``done(rows)`` holds (the writer thread writes soon, not at once)."""
    end = time.monotonic() + deadline
    while True:
        found = rows(directory)
        if done(found) or time.monotonic() > end:
            return found
        time.sleep(0.05)


def sessions_ended(count: int):
    return lambda found: sum(r["event"] == "-" for r in found) >= count


def logged_server(start_pop3_server, directory: Path, **settings):
    return start_pop3_server(
        {"login_type": "plaintext_login"},
        sections={"protocol_log": {"enabled": True, "directory": str(directory), **settings}},
    )


def test_each_file_has_exchange_s_header_and_fields_dd335141(start_pop3_server, tmp_path):
    """TechNet dd335141: "The protocol log files are text files that contain data in the
    comma-separated value (CSV) file format"; the fields date-time, connector-id (not used
    for POP3), session-id, sequence-number, local-endpoint, remote-endpoint, event, data,
    context."""
    server = logged_server(start_pop3_server, tmp_path / "log")
    poplib.POP3(server.host, server.port, timeout=TIMEOUT).quit()
    wait_for(tmp_path / "log", sessions_ended(1))
    [path] = (tmp_path / "log").glob("POP3*.LOG")
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert header[0] == "#Software: popbox"
    assert header[2] == "#Log-type: POP3 Protocol Log"
    assert header[-1] == (
        "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,"
        "remote-endpoint,event,data,context"
    )


def test_every_session_is_logged_before_and_after_login_dd335141(start_pop3_server, tmp_path):
    """dd335141: session-id is the same "for each event that is associated with that
    session"; sequence-number "starts at 0 and is incremented for each event in the same
    session"; the endpoints are "<IP address>:<port>"."""
    server = logged_server(start_pop3_server, tmp_path / "log")
    server.deliver("alice", b"Subject: x\r\n\r\n" + BODY_LINE + b"\r\n")
    client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    client.user("alice")
    with pytest.raises(poplib.error_proto):
        client.pass_("wrong password")
    client.user("alice")
    client.pass_(USERS["alice"])
    client.stat()
    client.retr(1)
    here = "{}:{}".format(*client.sock.getsockname())
    client.quit()
    found = wait_for(tmp_path / "log", sessions_ended(1))
    assert len({r["session-id"] for r in found}) == 1
    assert [int(r["sequence-number"]) for r in found] == list(range(len(found)))
    assert {r["remote-endpoint"] for r in found} == {here}
    assert {r["local-endpoint"] for r in found} == {f"127.0.0.1:{server.port}"}
    assert all(r["date-time"].endswith("Z") and "T" in r["date-time"] for r in found)
    events = [(r["event"], r["data"]) for r in found]
    assert events[0] == ("+", "")
    assert events[1] == (">", "+OK popbox POP3 server ready")
    assert ("<", "USER alice") in events
    assert ("<", "PASS ****") in events
    assert (">", "-ERR [AUTH] authentication failed") in events
    assert ("*", "logged in") in events
    assert ("<", "RETR 1") in events
    assert events[-1] == ("-", "")
    assert not any(BODY_LINE.decode() in data or "wrong password" in data for _, data in events)


def test_passwords_auth_payloads_and_bodies_never_appear(start_pop3_server, tmp_path):
    """DESIGN.md section 4: "a protocol log (commands and response status, never passwords
    or message bodies)": PASS, AUTH PLAIN's initial response, a SASL continuation line, a
    mistyped command carrying the password, and RETR's body."""
    server = logged_server(start_pop3_server, tmp_path / "log")
    server.deliver("alice", b"Subject: x\r\n\r\n" + BODY_LINE + b"\r\n")
    secret = USERS["alice"]
    plain = base64.b64encode(f"\0alice\0{secret}".encode()).decode()
    first = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    with pytest.raises(poplib.error_proto):
        first._shortcmd(f"PASSS {secret}")
    first._shortcmd(f"AUTH PLAIN {plain}")
    first.retr(1)
    first.quit()
    second = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    second._putcmd("AUTH PLAIN")
    assert second._getline()[0].startswith(b"+")
    second._shortcmd(plain)
    second.quit()
    found = wait_for(tmp_path / "log", sessions_ended(2))
    text = b"".join(p.read_bytes() for p in (tmp_path / "log").glob("POP3*.LOG"))
    assert secret.encode() not in text
    assert plain.encode() not in text
    assert BODY_LINE not in text
    data = [r["data"] for r in found if r["event"] == "<"]
    assert "PASSS ****" in data
    assert "AUTH PLAIN ****" in data
    assert data.count("****") == 1  # the continuation line


def test_rotation_under_load_loses_and_doubles_no_line(start_pop3_server, tmp_path):
    """LogPerFileSizeQuota: files roll over at a size; across every roll each session's
    sequence numbers run 0, 1, 2, ... with none missing and none twice."""
    server = logged_server(start_pop3_server, tmp_path / "log", per_file_size=4096)
    clients, rounds = 8, 40
    failures: list[BaseException] = []

    def one_session() -> None:
        try:
            client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
            try:
                for _ in range(rounds):
                    client.capa()
                client.quit()
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=one_session) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 3)
    assert not failures
    found = wait_for(tmp_path / "log", sessions_ended(clients))
    assert len({r["file"] for r in found}) > 5  # it did roll, many times
    by_session: dict[str, list[int]] = {}
    for row in found:
        by_session.setdefault(row["session-id"], []).append(int(row["sequence-number"]))
    assert len(by_session) == clients
    for numbers in by_session.values():
        # +, greeting, CAPA and its status line per round, QUIT and its reply, -
        assert sorted(numbers) == list(range(2 + 2 * rounds + 2 + 1))
    for path in (tmp_path / "log").glob("POP3*.LOG"):
        assert path.stat().st_size <= 4096 + 512  # one header beyond the quota at most


def test_time_rollover_puts_each_line_in_its_hour_and_keeps_all(tmp_path):
    """LogFileRollOverSettings Hourly: a line goes to the file of the hour it happened in;
    lines written across the hour boundary from many sessions all arrive once."""
    log = ProtocolLog(
        str(tmp_path),
        process="1",
        rollover="hourly",
        per_file_size=0,
        max_total_size=0,
        max_age=0,
        version="test",
        log=structlog.get_logger(),
    )
    start = 1_700_000_000.0 - 1_700_000_000.0 % HOUR + HOUR - 5  # 5 s before an hour
    for step in range(2000):
        log.event(start + step * 0.005, f"s{step % 7}", step // 7, "l", "r", "<", "NOOP")
    log.close()
    found = rows(tmp_path)
    assert len(found) == 2000
    assert len({r["file"] for r in found}) == 2
    for row in found:
        hour = row["date-time"][11:13]
        assert row["file"][12:14] == hour  # POP3yyyymmddHH-...
    for session in {r["session-id"] for r in found}:
        numbers = [int(r["sequence-number"]) for r in found if r["session-id"] == session]
        assert numbers == list(range(len(numbers)))


def test_total_size_cap_removes_the_oldest_files(tmp_path):
    """A cap on the total size: after a roll the oldest files go until the rest fit."""
    log = ProtocolLog(
        str(tmp_path),
        process="1",
        rollover="daily",
        per_file_size=2048,
        max_total_size=8192,
        max_age=0,
        version="test",
        log=structlog.get_logger(),
    )
    for step in range(3000):
        log.event(1_700_000_000.0, "s", step, "l", "r", "<", "NOOP")
    log.close()
    sizes = [p.stat().st_size for p in tmp_path.glob("POP3*.LOG")]
    assert sum(sizes) <= 8192 + 2048
    assert max(int(r["sequence-number"]) for r in rows(tmp_path)) == 2999  # the newest stay


@pytest.fixture
def disk(tmp_path: Path):
    with tmpfs.mounted(tmp_path / "disk", "1m") as mounted:
        yield mounted


def test_full_disk_keeps_serving_and_says_once_that_lines_were_dropped(
    start_pop3_server, disk: tmpfs.Tmpfs
):
    """A full disk under the protocol log: sessions are answered as ever; the server's log
    warns once; when space returns, the protocol log says how many lines it dropped."""
    directory = disk.path / "log"
    server = logged_server(start_pop3_server, directory)
    poplib.POP3(server.host, server.port, timeout=TIMEOUT).quit()
    wait_for(directory, sessions_ended(1))
    disk.fill()
    # Thirty sessions: more than the page the log file already holds can take.
    for _ in range(30):
        client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
        assert "UIDL" in client.capa()
        client.quit()
    end = time.monotonic() + TIMEOUT
    while not [e for e in server.errors() if e.get("event") == "protocol_log_dropping"]:
        assert time.monotonic() < end, "no warning about dropped lines"
        time.sleep(0.05)
    disk.free()
    poplib.POP3(server.host, server.port, timeout=TIMEOUT).quit()
    server.stop()  # every line queued is written or counted by then
    found = rows(directory)
    warnings = [e for e in server.errors() if e.get("event") == "protocol_log_dropping"]
    assert len(warnings) == 1
    notices = [r for r in found if "dropped" in r["data"]]
    assert notices
    assert {r["event"] for r in notices} == {"*"}
    dropped = sum(int(r["data"].split()[3]) for r in notices)
    # Every line is either in a file or counted as dropped: 7 per CAPA session (+,
    # greeting, CAPA, its status line, QUIT, its reply, -) and 5 per bare one.
    written = [r for r in found if r not in notices]
    assert len(written) + dropped == 5 + 30 * 7 + 5
    assert dropped > 0

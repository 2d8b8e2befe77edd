"""The server's one clock (popbox.clock) drives brute-force lockouts too (issue 16 item 7).

With a manual clock the lockout of RFC 2449 s8.1.2 (LOGIN-DELAY) lasts exactly
``auth.lockout_duration`` of that clock's time: the test moves time on, nothing sleeps.
"""

from __future__ import annotations

import select

from popbox.clock import ManualClock
from popbox_servers import USERS
from raw_pop3 import PLAINTEXT, Client, wait_until


def answer(server, client: Client) -> bytes:
    """The next reply line, moving the manual clock on by nothing until it comes.

    Even a zero failure delay is a timer on the server's clock, due at once.
    """

    def arrived() -> bool:
        return b"\n" in client.buffer or bool(select.select([client.sock], [], [], 0)[0])

    wait_until(lambda: server.advance(0) >= 0 and arrived())
    return client.line()


def attempt(server, client: Client, password: str) -> bytes:
    client.send(f"USER alice\r\nPASS {password}\r\n".encode())
    assert client.line() == b"+OK send PASS\r\n"
    return answer(server, client)


def test_a_lockout_lasts_lockout_duration_of_the_servers_clock_rfc2449_s8_1_2(
    start_pop3_server,
):
    """RFC 2449 s8.1.2: LOGIN-DELAY until the lockout is over, then the login works."""
    auth = {"user_lockout_failures": 2, "ip_lockout_failures": 0, "lockout_duration": 300}
    server = start_pop3_server(
        {
            **PLAINTEXT,
            "auth_failure_delay": 0,
            "max_auth_failures": 10,
            "unauthenticated_timeout": 900,
        },
        sections={"auth": auth},
        clock=ManualClock(),
    )
    with Client.connect(server) as client:
        assert client.line().startswith(b"+OK ")
        assert attempt(server, client, "guess 1").startswith(b"-ERR [AUTH]")
        assert attempt(server, client, "guess 2").startswith(b"-ERR [AUTH]")
        locked = attempt(server, client, USERS["alice"])
        assert locked == b"-ERR [LOGIN-DELAY] too many failed logins, try again in 300 seconds\r\n"
        server.advance(299)
        assert attempt(server, client, USERS["alice"]).startswith(b"-ERR [LOGIN-DELAY]")
        server.advance(1)
        assert attempt(server, client, USERS["alice"]).startswith(b"+OK logged in")

"""A directory that is down, hangs, talks garbage or restarts: TEMPFAIL in bounded time,
never "wrong password", logged once per outage, and recovery without a restart.

Bounds on elapsed time are generous multiples of the configured timeout (a loaded
two-core machine), never millisecond-level: they tell "timed out" from "hung".
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ldap_helpers import login
from popbox.clock import ManualClock
from popbox.directory.base import Status
from slapd import USERS, free_port
from tcp_relay import Relay

ANN = USERS["ann"]
TIMEOUT = 1.0
CONNECT_TIMEOUT = 0.5
BOUND = 8 * TIMEOUT  # "answered after the timeout", with room for a loaded machine


@pytest.fixture
async def relay():
    relays: list[Relay] = []

    async def start(**kwargs) -> Relay:
        started = await Relay(**kwargs).start()
        relays.append(started)
        return started

    yield start
    for started in relays:
        await started.stop()


async def _timed_login(directory, password: str = ANN.password):
    started = time.monotonic()
    verdict = await directory.authenticate(login("ann"), password, "")
    return verdict, time.monotonic() - started


async def _eventually(predicate, seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("scheme", ["ldap", "ldaps"])
async def test_a_server_that_accepts_and_never_answers_is_a_quick_tempfail(
    make_directory, relay, scheme
):
    """Connect works, then nothing: the bind (or the TLS handshake) never completes."""
    hang = await relay(mode="hang")
    uri = hang.uri if scheme == "ldap" else hang.ldaps_uri
    directory = make_directory(
        uris=[uri], allow_plaintext=True, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT
    )

    verdict, took = await _timed_login(directory)

    assert verdict.status is Status.TEMPFAIL
    assert took < BOUND
    assert not directory.healthy()
    assert hang.accepted >= 1


async def test_an_outage_is_logged_once_however_many_logins_fail(make_directory, relay):
    hang = await relay(mode="hang")
    directory = make_directory(
        uris=[hang.uri], allow_plaintext=True, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT
    )

    for _ in range(3):
        assert (await directory.authenticate(login("ann"), "x", "")).status is Status.TEMPFAIL
        assert (await directory.lookup(login("ann"))).status is Status.TEMPFAIL

    events = directory.log_sink.events("directory_unavailable")
    assert len(events) == 1
    assert events[0]["directory"] == "corp"
    assert hang.uri in events[0]["reason"]


async def test_garbage_from_the_server_is_a_tempfail_not_a_wrong_password(make_directory, relay):
    garbage = await relay(mode="garbage")
    directory = make_directory(
        uris=[garbage.uri], allow_plaintext=True, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT
    )

    verdict, took = await _timed_login(directory, "wrong password")

    assert verdict.status is Status.TEMPFAIL
    assert took < BOUND


async def test_nothing_listening_is_a_tempfail(make_directory):
    directory = make_directory(uris=[f"ldaps://127.0.0.1:{free_port()}"])

    verdict, took = await _timed_login(directory)

    assert verdict.status is Status.TEMPFAIL
    assert "127.0.0.1" in verdict.detail
    assert took < BOUND


@pytest.mark.parametrize("first", ["refused", "hang"])
async def test_the_next_uri_serves_when_the_first_is_down(make_directory, relay, slapd, first):
    """Several URIs are tried in order; a dead or hanging first one costs at most its
    timeout, and the login succeeds on the second."""
    if first == "hang":
        down = (await relay(mode="hang")).ldaps_uri
    else:
        down = f"ldaps://127.0.0.1:{free_port()}"
    directory = make_directory(
        uris=[down, slapd.ldaps_uri], timeout=3 * TIMEOUT, connect_timeout=CONNECT_TIMEOUT
    )

    verdict, took = await _timed_login(directory)

    assert verdict.status is Status.OK
    assert took < BOUND
    assert directory.healthy()


async def test_a_failed_server_is_skipped_until_the_retry_interval_passes(make_directory, relay):
    """While every URI is in its back-off a login fails at once, without a connection
    attempt (a hanging server would otherwise cost each login a timeout)."""
    clock = ManualClock()
    hang = await relay(mode="hang")
    directory = make_directory(
        uris=[hang.uri],
        allow_plaintext=True,
        timeout=TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
        retry_interval=30,
        clock=clock,
    )
    assert (await directory.authenticate(login("ann"), "x", "")).status is Status.TEMPFAIL
    tried = hang.accepted

    verdict, took = await _timed_login(directory)

    assert verdict.status is Status.TEMPFAIL
    assert "every server failed" in verdict.detail
    assert hang.accepted == tried
    assert took < TIMEOUT  # it did not wait for the hanging server
    clock.advance(30)
    await directory.authenticate(login("ann"), "x", "")
    assert await _eventually(lambda: hang.accepted > tried)


async def test_slapd_restarted_mid_run_recovers_by_itself(make_directory, own_slapd):
    """Down: TEMPFAIL and unhealthy.  Back: the probe finds it without any login,
    ``healthy()`` is true again, one recovery line is logged, and logins work."""
    clock = ManualClock()
    directory = make_directory(server=own_slapd, clock=clock, retry_interval=10)
    assert (await directory.authenticate(login("ann"), ANN.password, "")).status is Status.OK

    own_slapd.stop()
    assert (await directory.authenticate(login("ann"), ANN.password, "")).status is (
        Status.TEMPFAIL
    )
    assert not directory.healthy()
    own_slapd.resume()
    assert await _eventually(lambda: clock.pending() > 0)  # the probe waits ...
    clock.advance(10)  # ... retry_interval

    assert await _eventually(directory.healthy)
    assert len(directory.log_sink.events("directory_recovered")) == 1
    assert (await directory.authenticate(login("ann"), ANN.password, "")).status is Status.OK
    assert len(directory.log_sink.events("directory_unavailable")) == 1


async def test_a_restart_between_logins_goes_unnoticed(make_directory, own_slapd):
    """The pool's idle connections died with the old slapd; the next login retries once
    on a fresh connection instead of failing."""
    directory = make_directory(server=own_slapd)
    assert (await directory.authenticate(login("ann"), ANN.password, "")).status is Status.OK

    own_slapd.restart()

    assert (await directory.authenticate(login("ann"), ANN.password, "")).status is Status.OK
    assert directory.healthy()
    assert directory.log_sink.events("directory_unavailable") == []


async def test_the_pool_never_opens_more_than_its_size(make_directory, relay, slapd):
    """pool_size slots, two connections each (search + user bind), however many logins
    run at once."""
    forward = await relay(target=("127.0.0.1", slapd.ldaps_port), delay=0.02)
    directory = make_directory(uris=[forward.ldaps_uri], pool_size=2)

    verdicts = await asyncio.gather(
        *(directory.authenticate(login("ann"), ANN.password, "") for _ in range(12))
    )

    assert {v.status for v in verdicts} == {Status.OK}
    assert forward.accepted == 4
    assert forward.max_open == 4


async def test_logins_waiting_for_a_busy_pool_give_up_in_time(make_directory, relay):
    hang = await relay(mode="hang")
    directory = make_directory(
        uris=[hang.uri],
        allow_plaintext=True,
        pool_size=1,
        timeout=TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
    )
    started = time.monotonic()

    verdicts = await asyncio.gather(
        *(directory.authenticate(login("ann"), ANN.password, "") for _ in range(3))
    )

    assert {v.status for v in verdicts} == {Status.TEMPFAIL}
    assert time.monotonic() - started < BOUND
    assert hang.max_open <= 2

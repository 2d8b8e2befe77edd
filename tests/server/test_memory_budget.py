"""The memory budget for large bodies (``server.memory_budget``, issue 15 item 10).

A RETR whose body does not fit in what is left waits for room, first come first served,
and gets ``-ERR [SYS/TEMP]`` (RFC 3206 s4: "try again later") if none frees up within
``BODY_WAIT``; its session goes on.  Time is the manual clock's, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import select

import pytest

from popbox.clock import ManualClock
from popbox.config import ConfigError, from_mapping
from popbox.server.budget import BODY_WAIT, READ_COPIES, SETTLE_RECHECK, MemoryBudget
from raw_pop3 import PLAINTEXT, Client, wait_until

MIB = 1024 * 1024


async def test_a_reservation_that_does_not_fit_waits_its_turn_then_is_refused():
    clock = ManualClock()
    budget = MemoryBudget(10, clock)
    assert budget.try_reserve(6)
    first = asyncio.ensure_future(budget.reserve(6))
    second = asyncio.ensure_future(budget.reserve(3))
    await asyncio.sleep(0)
    assert not first.done()
    assert not second.done()  # first come, first served: 3 would fit, but waits its turn
    assert not budget.try_reserve(1)  # nor may anyone overtake the queue
    budget.release(6)
    await asyncio.sleep(0)
    assert first.result() is True
    assert budget.held == 9  # and the second fit behind it
    assert second.result() is True
    late = asyncio.ensure_future(budget.reserve(5))
    await asyncio.sleep(0)
    clock.advance(BODY_WAIT)
    assert await late is False
    assert budget.held == 9


async def test_a_body_larger_than_the_budget_is_admitted_alone():
    budget = MemoryBudget(10, ManualClock())
    assert budget.try_reserve(50)  # nothing else held: it may still be downloaded
    assert not budget.try_reserve(1)
    budget.release(50)
    assert budget.held == 0


async def test_a_cancelled_waiter_leaves_the_queue():
    clock = ManualClock()
    budget = MemoryBudget(10, clock)
    assert budget.try_reserve(10)
    waiter = asyncio.ensure_future(budget.reserve(5))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.release(10)
    assert budget.held == 0
    assert budget.try_reserve(10)


def test_memory_budget_must_not_be_negative():
    with pytest.raises(ConfigError, match=r"server\.memory_budget"):
        from_mapping({"server": {"memory_budget": -1}})


def readable(client: Client) -> bool:
    return b"\n" in client.buffer or bool(select.select([client.sock], [], [], 0)[0])


def big(size: int) -> bytes:
    return b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * (size // 80)


def test_a_retr_beyond_the_budget_gets_sys_temp_and_the_session_goes_on_rfc3206_s4(
    start_pop3_server,
):
    """RFC 3206 s4: SYS/TEMP: "the problem is temporary ... try again later".

    One client holds the budget with a body it does not read; a second client's RETR of
    the same size waits, and is refused once BODY_WAIT has passed.  After the first
    client has read its body, the second's retry is answered.  The body is three times
    the largest send buffer Linux gives a TCP socket by default (tcp_wmem's 4 MiB), so
    that most of it stays in the process however large the kernel's buffers grow.
    """
    clock = ManualClock()
    size = 12 * MIB
    budget = (size + MIB) * READ_COPIES  # room for one body being read, not two
    server = start_pop3_server(
        PLAINTEXT, sections={"server": {"memory_budget": budget}}, clock=clock
    )
    [message] = server.deliver("alice", big(size))
    reply = b"+OK %d octets\r\n" % message.info.size
    with Client.connect(server, receive_buffer=65536) as holder, Client.connect(server) as late:
        holder.log_in()
        late.log_in()
        holder.send(b"RETR 1\r\n")
        wait_until(lambda: True in server.blocked())
        late.send(b"RETR 1\r\n")
        # A second at a time until the refusal comes (BODY_WAIT after the RETR arrived).
        wait_until(lambda: server.advance(1.0) >= 0 and readable(late))
        assert clock.monotonic() >= BODY_WAIT
        assert (
            late.line() == b"-ERR [SYS/TEMP] the mail store is not available, try again later\r\n"
        )
        late.send(b"NOOP\r\n")
        assert late.line() == b"+OK\r\n"
        assert holder.line() == reply
        holder.exactly(message.info.size + 3)  # the body and ".\r\n"
        late.send(b"RETR 1\r\n")
        # When the body's last slice left the process after the outbox last looked, the
        # session gives the budget back at its next look, SETTLE_RECHECK later.
        wait_until(lambda: server.advance(SETTLE_RECHECK) >= 0 and readable(late))
        assert late.line() == reply
    assert [e["octets"] for e in server.log.events("memory_budget_full")] == [message.info.size]

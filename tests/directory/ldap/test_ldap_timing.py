"""V0009 for the LDAP directory: an unknown user costs what a wrong password costs.

The method is the one of ``tests/auth/test_bruteforce_server.py``: interleaved attempts,
then medians, trimmed means and the median paired difference compared with a quarter
of the cost a shortcut would skip.  slapd on loopback answers in well under a
millisecond, where a loaded machine's jitter is larger than any signal, so the server
is reached through a relay that adds 20 ms to every reply, as a domain controller
across a WAN link would: a login then costs two round trips (search, bind), and an
unknown user that skipped the bind would be a whole round trip (about half) faster.
"""

from __future__ import annotations

import statistics
import time

from ldap_helpers import login
from popbox.directory.base import Status
from tcp_relay import Relay

LATENCY = 0.02


def trimmed_mean(values: list[float], cut: float = 0.1) -> float:
    """Mean of the middle values: a busy test machine adds rare long pauses."""
    ordered = sorted(values)
    k = int(len(ordered) * cut)
    return statistics.fmean(ordered[k : len(ordered) - k])


async def test_unknown_user_costs_the_same_time_as_a_wrong_password_v0009(make_directory, slapd):
    """V0009: "nothing tells an attacker which users exist (not ... the timing of PASS)"."""
    relay = await Relay(target=("127.0.0.1", slapd.ldaps_port), delay=LATENCY).start()
    try:
        directory = make_directory(uris=[relay.ldaps_uri], pool_size=1)
        await directory.authenticate(login("warm"), "up", "")  # connections out of the sample
        known: list[float] = []
        unknown: list[float] = []
        for n in range(30):
            for name, sample in (("ann", known), (f"ghost{n}", unknown))[:: 1 if n % 2 else -1]:
                started = time.perf_counter()
                verdict = await directory.authenticate(login(name), "wrong password", "")
                sample.append(time.perf_counter() - started)
                assert verdict.status is (Status.WRONG if name == "ann" else Status.UNKNOWN)
    finally:
        await relay.stop()
    cost = statistics.median(known)
    assert cost > 2 * LATENCY  # both round trips happened
    tolerance = 0.25 * cost
    paired = [k - u for k, u in zip(known, unknown, strict=True)]
    assert abs(statistics.median(paired)) < tolerance, paired
    assert abs(cost - statistics.median(unknown)) < tolerance, (known, unknown)
    assert abs(trimmed_mean(known) - trimmed_mean(unknown)) < tolerance, (known, unknown)

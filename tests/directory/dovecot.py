"""Hashes made by Dovecot itself (``doveadm pw``), so verification is checked against the
real producer rather than against popbox's own hashing."""

from __future__ import annotations

import shutil
import subprocess

import pytest

DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"


def doveadm_hash(scheme: str, password: str) -> str:
    """``{SCHEME}hash`` of ``password`` as ``doveadm pw -s SCHEME`` writes it.

    ``-c /dev/null``: doveadm needs no configuration for ``pw``, and must not read the
    machine's (which may not exist or not be readable).
    """
    if not shutil.which(DOVEADM):
        pytest.fail("doveadm (Debian dovecot-core) is needed to make the test hashes")
    result = subprocess.run(
        [DOVEADM, "-c", "/dev/null", "pw", "-s", scheme, "-p", password],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()

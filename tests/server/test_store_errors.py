"""Each kind of store error and the one response code it is answered with (RFC 3206).

``server/store_errors.response_code`` is the only place that decides: [SYS/TEMP] for
what may pass (RFC 3206 s4: "a problem which is likely temporary in nature"), [SYS/PERM]
for what will not ("unlikely to be resolved without intervention"), and [IN-USE] for a
maildrop another session holds (RFC 2449 s8.1.1).
"""

from __future__ import annotations

import sqlite3

import pytest

from popbox.auth.jwks import JwksUnavailable
from popbox.protocol.replies import RespCode
from popbox.server.store_errors import response_code
from popbox.store import SQLITE_FILE_NAME
from popbox.store.base import (
    CommitOutcomeUnknown,
    DeliveryRefused,
    MaildropLocked,
    RefusalReason,
    StoreError,
    StorePermanentError,
    StoreTemporaryError,
    UnknownUser,
    UserExists,
)
from popbox.store.migrate import MigrationError
from raw_pop3 import LOGIN, PLAINTEXT, Client


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StoreTemporaryError("the mail database is unavailable (SQLITE_BUSY)"), RespCode.SYS_TEMP),
        (CommitOutcomeUnknown("could not learn it in time"), RespCode.SYS_TEMP),
        (JwksUnavailable("no signing keys"), RespCode.SYS_TEMP),
        (MaildropLocked("maildrop 'alice' is locked"), RespCode.IN_USE),
        (StorePermanentError("the mail database needs an administrator"), RespCode.SYS_PERM),
        (MigrationError("schema newer than this popbox"), RespCode.SYS_PERM),
        (UnknownUser("no such user 'alice'"), RespCode.SYS_PERM),
        (UserExists("user 'alice' already exists"), RespCode.SYS_PERM),
        (DeliveryRefused(RefusalReason.OVER_QUOTA, "over quota"), RespCode.SYS_PERM),
        (StoreError("any other refusal"), RespCode.SYS_PERM),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_each_store_error_kind_has_one_response_code_rfc3206(
    error: StoreError, code: RespCode
) -> None:
    assert response_code(error) is code


def test_a_login_the_store_cannot_serve_until_an_administrator_acts_is_sys_perm(
    start_pop3_server,
):
    """RFC 3206 s4 end to end: a user whose stored verifiers are unreadable (a corrupt
    row) cannot log in until an administrator fixes it: [SYS/PERM], not "try again"."""
    server = start_pop3_server(PLAINTEXT)
    conn = sqlite3.connect(server.config.data_dir / SQLITE_FILE_NAME, isolation_level=None)
    try:
        conn.execute("UPDATE users SET verifiers = 'not json' WHERE name = 'alice'")
    finally:
        conn.close()
    with Client.connect(server) as client:
        client.line()
        client.send(LOGIN)
        assert client.line() == b"+OK send PASS\r\n"
        assert client.line() == (
            b"-ERR [SYS/PERM] the mail store cannot do this until an administrator acts\r\n"
        )

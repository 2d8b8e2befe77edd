"""Which RFC 3206 / RFC 2449 response code each kind of store error is answered with.

The one place that decides it: ``[SYS/TEMP]`` for a condition that may pass (the
database is down or busy, a commit's outcome could not be learnt in time), ``[IN-USE]``
for a maildrop another session holds, and ``[SYS/PERM]`` for everything that will not
work until an administrator acts (a corrupt or foreign schema, a user that vanished
between authentication and the snapshot, any other refusal a POP3 session cannot fix).
"""

from __future__ import annotations

from popbox.protocol.replies import RespCode
from popbox.store.base import MaildropLocked, StoreError, StoreTemporaryError

__all__ = ["response_code"]


def response_code(error: StoreError) -> RespCode:
    """The response code a POP3 client is told for ``error``."""
    if isinstance(error, MaildropLocked):
        return RespCode.IN_USE
    if isinstance(error, StoreTemporaryError):
        return RespCode.SYS_TEMP
    return RespCode.SYS_PERM

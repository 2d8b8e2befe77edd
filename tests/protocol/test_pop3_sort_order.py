"""Set-PopSettings MessageRetrievalSortOrder: "descending" numbers the newest message 1."""

from __future__ import annotations

from popbox.config import from_mapping
from popbox.protocol.connection import ConnectionSettings, Retrieve, Update
from popbox.protocol.testing import logged_in, message_info, talk

OLDEST, MIDDLE, NEWEST = message_info(1, 10), message_info(2, 20), message_info(3, 30)


def test_descending_numbers_the_newest_message_first_set_popsettings() -> None:
    """Set-PopSettings: MessageRetrievalSortOrder Descending lists the newest message as
    number 1.  The message numbers of RFC 1939 s5 follow: LIST, UIDL, RETR and DELE all
    count from the newest."""
    conn = logged_in(
        [OLDEST, MIDDLE, NEWEST], ConnectionSettings(tls_active=True, newest_first=True)
    )
    listing = talk(conn, b"LIST\r\nUIDL\r\n").output
    assert listing == (
        b"+OK scan listing follows\r\n1 30\r\n2 20\r\n3 10\r\n.\r\n"
        b"+OK unique-id listing follows\r\n1 3\r\n2 2\r\n3 1\r\n.\r\n"
    )
    assert talk(conn, b"RETR 1\r\n").events == [Retrieve(1, NEWEST, None)]
    conn.message_gone()
    conn.data_to_send()
    assert talk(conn, b"DELE 3\r\nQUIT\r\n").events == [Update(deleted=(1,), retrieved=())]


def test_ascending_is_the_default_set_popsettings() -> None:
    """Set-PopSettings: MessageRetrievalSortOrder's default is Ascending (oldest first)."""
    assert from_mapping({}).pop3.message_order == "ascending"
    conn = logged_in([OLDEST, NEWEST])
    assert talk(conn, b"UIDL\r\n").output == b"+OK unique-id listing follows\r\n1 1\r\n2 3\r\n.\r\n"

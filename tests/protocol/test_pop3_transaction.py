"""TRANSACTION and UPDATE (RFC 1939 s5-7; 2.1.3-2.1.5, C0004, C0007-C0009, V0004-V0006)."""

from __future__ import annotations

import pytest

import pop3_replies as R  # noqa: N812 - STYLE s4 names the reply constants R
from popbox.protocol.connection import ConnectionSettings, Pop3Connection, Retrieve, Signal, Update
from popbox.protocol.maildrop import Maildrop
from popbox.protocol.replies import RespCode
from popbox.protocol.states import State
from popbox.protocol.testing import Responder, logged_in, message_info, talk

WIRE_1 = b"Subject: one\r\n\r\n" + b"a" * 104 + b"\r\n"  # 120 octets
WIRE_2 = b"Subject: two\r\n\r\n" + b"b" * 184 + b"\r\n"  # 200 octets
WIRE_3 = b"Subject: three\r\n\r\nline 1\r\n..dot\r\nline 3\r\n"  # stuffed: 1 octet more
INFO_1 = message_info(10, 120, stored_size=1024)
INFO_2 = message_info(20, 200, stored_size=2048)
INFO_3 = message_info(35, len(WIRE_3) - 1, stored_size=4096, legacy_uidl="whqtswO00WBw418f9t5JxYwZ")
INFOS = [INFO_1, INFO_2, INFO_3]
SETTINGS = ConnectionSettings(tls_active=True)
INEXACT = ConnectionSettings(tls_active=True, exact_rfc822_size=False)


def sent(conn: Pop3Connection) -> bytes:
    return b"".join(conn.data_to_send())


def two() -> Pop3Connection:
    return logged_in([INFO_1, INFO_2], SETTINGS)


def three(settings: ConnectionSettings = SETTINGS) -> Pop3Connection:
    return logged_in(INFOS, settings)


def responder() -> Responder:
    return Responder(messages=[(INFO_1, WIRE_1), (INFO_2, WIRE_2), (INFO_3, WIRE_3)])


# -- STAT ----------------------------------------------------------------------------------


def test_stat_is_count_and_size_with_nothing_after_v0004():
    """V0004: "Microsoft Exchange Server does not return any additional information after
    the mailbox size (in octets)." RFC 1939 s5: "+OK" followed by a single space, the
    number of messages in the maildrop, a single space, and the size of the maildrop"."""
    assert talk(two(), b"STAT\r\n").output == b"+OK 2 320\r\n"


def test_stat_of_empty_maildrop_rfc1939_s5():
    """RFC 1939 s5: STAT "Possible Responses: +OK nn mm"."""
    assert talk(logged_in([], SETTINGS), b"STAT\r\n").output == R.stat(0, 0)


def test_stat_does_not_count_deleted_messages_rfc1939_s5():
    """RFC 1939 s5: "Note that messages marked as deleted are not counted in either total." """
    assert talk(two(), b"DELE 1\r\nSTAT\r\n").output == R.deleted(1) + R.stat(1, 200)


# The estimate's documented model (maildrop.py): stored + stored // 32 + 384.
ESTIMATE_1, ESTIMATE_2, ESTIMATE_3 = 1024 + 32 + 384, 2048 + 64 + 384, 4096 + 128 + 384


def test_stat_and_list_use_the_estimate_when_not_exact_2_1_4_2_1_5():
    """2.1.4: "By default, Microsoft Exchange Server does not calculate the exact size of the
    maildrop in octets. Instead, the size is calculated based on the amount of storage the
    message actually occupies in storage." 2.1.5 says the same of LIST."""
    conn = three(INEXACT)
    assert talk(conn, b"STAT\r\nLIST 2\r\nLIST\r\n").output == (
        R.stat(3, ESTIMATE_1 + ESTIMATE_2 + ESTIMATE_3)
        + R.scan(2, ESTIMATE_2)
        + R.multiline(
            R.OK_SCAN_LISTING,
            b"1 %d" % ESTIMATE_1,
            b"2 %d" % ESTIMATE_2,
            b"3 %d" % ESTIMATE_3,
        )
    )


def test_the_estimate_never_equals_the_octets_retr_sends_2_1_5():
    """2.1.5: LIST gives "the amount of storage the message actually occupies", not the
    exact size; popbox's estimate differs from the RETR octet count for every message
    (even one whose stored form is its exact form), and is the same in every session."""
    for size in (0, 1, 77, 4096, 10**6):
        info = message_info(1, size)
        first, second = Maildrop([info], exact_size=False), Maildrop([info], exact_size=False)
        assert first.size_of(info) != size
        assert first.size_of(info) == second.size_of(info) > size


def test_login_reply_uses_the_same_size_as_stat_2_1_4():
    """2.1.4: STAT reports storage size when exact sizes are off; the login greeting's
    totals agree with it."""
    conn = Pop3Connection(INEXACT)
    talk(conn, b"USER a\r\nPASS b\r\n")
    conn.login_succeeded("a", INFOS)
    assert sent(conn).endswith(R.logged_in(3, ESTIMATE_1 + ESTIMATE_2 + ESTIMATE_3))


# -- LIST ----------------------------------------------------------------------------------


def test_list_all_is_scan_listing_with_exact_sizes_rfc1939_s5_v0005():
    """RFC 1939 s5: "A scan listing consists of the message-number of the message, followed
    by a single space and the exact size of the message in octets." V0005: nothing follows
    the size."""
    assert talk(two(), b"LIST\r\n").output == R.multiline(R.OK_SCAN_LISTING, b"1 120", b"2 200")


def test_list_of_empty_maildrop_is_status_and_terminator_rfc1939_s5():
    """RFC 1939 s5: "If there are no messages in the maildrop, then the POP3 server responds
    with no scan listings--it issues a positive response followed by a line containing a
    termination octet and a CRLF pair." """
    assert talk(logged_in([], SETTINGS), b"LIST\r\n").output == R.OK_SCAN_LISTING + b".\r\n"


def test_list_one_is_single_scan_listing_rfc1939_s5():
    """RFC 1939 s5: "C: LIST 2 / S: +OK 2 200"."""
    assert talk(two(), b"LIST 2\r\n").output == b"+OK 2 200\r\n"


def test_list_hides_deleted_messages_rfc1939_s5():
    """RFC 1939 s5: "Note that messages marked as deleted are not listed." The numbers of
    the others do not change."""
    conn = three()
    assert talk(conn, b"DELE 2\r\nLIST\r\n").output == R.deleted(2) + R.multiline(
        R.OK_SCAN_LISTING, b"1 120", f"3 {INFO_3.size}".encode()
    )


@pytest.mark.parametrize("verb", ["LIST", "UIDL", "RETR", "DELE"])
def test_deleted_message_is_refused_by_every_command_rfc1939_s5(verb):
    """RFC 1939 s5: "a message-number ... which, if present, may NOT refer to a message
    marked as deleted"; DELE: "Any future reference to the message-number associated with
    the message in a POP3 command generates an error." """
    conn = two()
    exchange = talk(conn, f"DELE 1\r\n{verb} 1\r\n".encode())
    assert exchange.output == R.deleted(1) + R.marked_deleted(1)
    assert exchange.events == []


def test_top_of_deleted_message_is_refused_rfc1939_s7():
    """RFC 1939 s7: TOP "a message-number (required) which may NOT refer to to a message
    marked as deleted"."""
    conn = two()
    assert talk(conn, b"DELE 2\r\nTOP 2 0\r\n").output == R.deleted(2) + R.marked_deleted(2)


@pytest.mark.parametrize("line", [b"LIST 3", b"UIDL 3", b"RETR 3", b"DELE 3", b"TOP 3 1"])
def test_message_number_beyond_count_is_refused_rfc1939_s5(line):
    """RFC 1939 s5: "C: LIST 3 / S: -ERR no such message, only 2 messages in maildrop"."""
    exchange = talk(two(), line + b"\r\n")
    assert exchange.output == R.no_such_message(3, 2)
    assert exchange.events == []


def test_no_such_message_text_counts_singular_and_zero_v0001():
    """V0001: "Microsoft Exchange includes informational text after some negative
    responses"; the text gives the real count, in correct English."""
    assert talk(logged_in([INFO_1], SETTINGS), b"RETR 2\r\n").output == (
        b"-ERR no message 2: the maildrop has 1 message\r\n"
    )
    assert talk(logged_in([], SETTINGS), b"LIST 1\r\n").output == (
        b"-ERR no message 1: the maildrop has 0 messages\r\n"
    )


# -- UIDL ----------------------------------------------------------------------------------


def test_uidl_all_shows_decimal_uids_and_legacy_strings_c0007_c0009():
    """C0007: "Microsoft Exchange Server uses decimal integers for the unique-id of
    messages." C0009: "If messages were carried over from an Exchange 2003 server, their
    unique-ids remain in the Exchange 2003 format". RFC 1939 s7: "No information follows
    the unique-id in the unique-id listing." """
    assert talk(three(), b"UIDL\r\n").output == R.multiline(
        R.OK_UIDL_LISTING, b"1 10", b"2 20", b"3 whqtswO00WBw418f9t5JxYwZ"
    )


def test_uidl_one_is_single_unique_id_listing_rfc1939_s7():
    """RFC 1939 s7: "C: UIDL 2 / S: +OK 2 QhdPYR:00WBw1Ph7x7"."""
    conn = three()
    assert talk(conn, b"UIDL 2\r\nUIDL 3\r\n").output == (
        R.unique_id(2, "20") + R.unique_id(3, "whqtswO00WBw418f9t5JxYwZ")
    )


def test_uidl_hides_deleted_messages_rfc1939_s7():
    """RFC 1939 s7 UIDL: "Note that messages marked as deleted are not listed." """
    conn = three()
    assert talk(conn, b"DELE 1\r\nUIDL\r\n").output == R.deleted(1) + R.multiline(
        R.OK_UIDL_LISTING, b"2 20", b"3 whqtswO00WBw418f9t5JxYwZ"
    )


def test_uidl_of_empty_maildrop_rfc1939_s7():
    """RFC 1939 s7: UIDL "Possible Responses: +OK unique-id listing follows"."""
    assert talk(logged_in([], SETTINGS), b"UIDL\r\n").output == R.multiline(R.OK_UIDL_LISTING)


# -- RETR / TOP ----------------------------------------------------------------------------


def test_retr_raises_retrieve_and_frames_the_message_rfc1939_s5():
    """RFC 1939 s5: "C: RETR 1 / S: +OK 120 octets / S: <the POP3 server sends the entire
    message here> / S: ." """
    conn = two()
    assert talk(conn, b"RETR 1\r\n").events == [Retrieve(1, INFO_1, None)]
    conn.send_message(WIRE_1)
    assert sent(conn) == b"+OK 120 octets\r\n" + WIRE_1 + b".\r\n"
    assert conn.state is State.TRANSACTION


def test_retr_passes_stuffed_wire_form_verbatim_rfc1939_s3():
    """RFC 1939 s3: "If any line of the multi-line response begins with the termination
    octet, the line is "byte-stuffed" by pre-pending the termination octet to that line".
    Stored messages are stuffed already (DESIGN s1), so the wire goes out as it is, and
    the octet count is the unstuffed size (RFC 1939 s11)."""
    conn = three()
    exchange = talk(conn, b"RETR 3\r\n", respond=responder())
    assert exchange.output == R.octets(len(WIRE_3) - 1) + WIRE_3 + R.TERMINATOR
    assert b"\r\n..dot\r\n" in exchange.output


def test_retr_size_is_the_estimate_when_not_exact_2_1_5():
    """2.1.5: "By default, Microsoft Exchange Server does not calculate the exact size of the
    message in octets. Instead, the size is calculated based on the amount of storage"."""
    exchange = talk(three(INEXACT), b"RETR 1\r\n", respond=responder())
    assert exchange.output == R.octets(ESTIMATE_1) + WIRE_1 + R.TERMINATOR


def test_retr_of_data_without_final_crlf_gets_one_before_terminator_rfc1939_s3():
    """RFC 1939 s3: "Hence a multi-line response is terminated with the five octets
    "CRLF.CRLF"." Data not ending in CRLF gets one, so "." stands on its own line."""
    conn = two()
    talk(conn, b"RETR 1\r\n")
    conn.send_message(b"Subject: x\r\n\r\nno newline")
    assert sent(conn) == R.octets(120) + b"Subject: x\r\n\r\nno newline\r\n.\r\n"


def test_retr_of_empty_message_is_status_and_terminator_rfc1939_s3():
    """RFC 1939 s3: "When all lines of the response have been sent, a final line is sent,
    consisting of a termination octet"."""
    conn = logged_in([message_info(1, 0)], SETTINGS)
    talk(conn, b"RETR 1\r\n")
    conn.send_message(b"")
    assert sent(conn) == R.octets(0) + R.TERMINATOR


def test_top_zero_returns_headers_only_rfc1939_s7():
    """RFC 1939 s7: "the POP3 server sends the headers of the message, the blank line
    separating the headers from the body, and then the number of lines of the indicated
    message's body"; with n = 0 that is the headers and the blank line."""
    conn = three()
    assert talk(conn, b"TOP 3 0\r\n").events == [Retrieve(3, INFO_3, 0)]
    conn.send_message(b"Subject: three\r\n\r\n")
    assert sent(conn) == R.OK_TOP + b"Subject: three\r\n\r\n" + R.TERMINATOR


def test_top_frames_partial_message_and_does_not_count_as_retrieved_rfc1939_s7():
    """RFC 1939 s7: TOP "+OK top of message follows"; only RETR marks a message retrieved
    (E0005 retention treats retrieved and never-retrieved messages differently)."""
    respond = responder()
    conn = three()
    exchange = talk(conn, b"TOP 3 2\r\nQUIT\r\n", respond=respond)
    assert exchange.output.startswith(
        R.OK_TOP + b"Subject: three\r\n\r\nline 1\r\n..dot\r\n" + R.TERMINATOR
    )
    assert respond.updates == [Update(deleted=(), retrieved=())]


def test_top_more_lines_than_body_sends_whole_message_rfc1939_s7():
    """RFC 1939 s7: "if the number of lines requested by the POP3 client is greater than
    than the number of lines in the body, then the POP3 server sends the entire message." """
    exchange = talk(three(), b"TOP 1 999\r\n", respond=responder())
    assert exchange.output == R.OK_TOP + WIRE_1 + R.TERMINATOR


def test_message_removed_by_another_session_is_err_c0004():
    """C0004: "If a message is deleted while the POP session is opened, the RETR and TOP
    commands will return an error." The session goes on."""
    conn = two()
    talk(conn, b"RETR 2\r\n")
    conn.message_gone()
    assert sent(conn) == R.message_gone(2)
    assert conn.state is State.TRANSACTION
    respond = Responder(messages=[(INFO_1, WIRE_1)])
    exchange = talk(conn, b"TOP 2 1\r\nQUIT\r\n", respond=respond)
    assert exchange.output == R.message_gone(2) + R.signing_off(0)
    assert respond.updates == [Update((), ())]


def test_store_failure_during_retr_is_sys_temp_and_session_goes_on_rfc3206():
    """RFC 3206 SYS/TEMP: "a problem which is likely temporary in nature"; V0001: the -ERR
    says why. The message is not counted as retrieved."""
    conn = two()
    talk(conn, b"RETR 1\r\n")
    conn.store_failed()
    assert sent(conn) == R.ERR_STORE_UNAVAILABLE
    assert conn.state is State.TRANSACTION
    respond = Responder()
    talk(conn, b"QUIT\r\n", respond=respond)
    assert respond.updates == [Update((), ())]


def test_snapshot_ignores_later_changes_to_the_message_list_c0004():
    """C0004: "the POP3 server makes a snapshot of the list of messages on the maildrop and
    ignores any additions, changes, or deletes in the maildrop"."""
    messages = [INFO_1]
    conn = logged_in(messages, SETTINGS)
    messages.append(INFO_2)
    messages.clear()
    assert talk(conn, b"STAT\r\nLIST 2\r\n").output == R.stat(1, 120) + R.no_such_message(2, 1)


# -- DELE / RSET / NOOP ----------------------------------------------------------------------


def test_dele_marks_and_second_dele_is_err_rfc1939_s5():
    """RFC 1939 s5: "C: DELE 1 / S: +OK message 1 deleted ... C: DELE 2 / S: -ERR message 2
    already deleted"."""
    assert talk(two(), b"DELE 1\r\nDELE 1\r\n").output == R.deleted(1) + R.marked_deleted(1)


def test_rset_unmarks_deleted_messages_rfc1939_s5():
    """RFC 1939 s5: RSET "If any messages have been marked as deleted by the POP3 server,
    they are unmarked." ("S: +OK maildrop has 2 messages (320 octets)")."""
    conn = two()
    exchange = talk(conn, b"DELE 1\r\nDELE 2\r\nRSET\r\nLIST\r\n")
    assert exchange.output == (
        R.deleted(1)
        + R.deleted(2)
        + b"+OK maildrop has 2 messages (320 octets)\r\n"
        + R.multiline(R.OK_SCAN_LISTING, b"1 120", b"2 200")
    )
    respond = Responder()
    talk(conn, b"QUIT\r\n", respond=respond)
    assert respond.updates == [Update((), ())]


def test_noop_is_bare_ok_rfc1939_s5():
    """RFC 1939 s5: "The POP3 server does nothing, it merely replies with a positive
    response." ("S: +OK")."""
    assert talk(two(), b"NOOP\r\n").output == b"+OK\r\n"


# -- QUIT / UPDATE ---------------------------------------------------------------------------


def test_quit_reports_deleted_and_retrieved_uids_in_order_rfc1939_s6():
    """RFC 1939 s6: "The POP3 server removes all messages marked as deleted from the
    maildrop". Update names them by unique id (not message number); retrieved messages
    that are also deleted are only in ``deleted``."""
    respond = responder()
    conn = three()
    talk(conn, b"RETR 3\r\nRETR 1\r\nDELE 3\r\nRETR 2\r\nDELE 1\r\nQUIT\r\n", respond=respond)
    assert respond.updates == [Update(deleted=(10, 35), retrieved=(20,))]
    assert conn.state is State.CLOSED


def test_update_success_says_how_many_were_deleted_rfc1939_s6():
    """RFC 1939 s6: QUIT "replies as to the status of this operation" ("+OK dewey POP3
    server signing off (2 messages left)")."""
    conn = two()
    exchange = talk(conn, b"DELE 2\r\nDELE 1\r\nQUIT\r\nNOOP\r\n")
    assert exchange.events == [Update(deleted=(10, 20), retrieved=())]
    assert conn.state is State.UPDATE
    conn.update_finished(ok=True)
    assert sent(conn) == R.signing_off(2)
    assert conn.next_event() is Signal.CLOSED


def test_update_failure_is_sys_temp_err_v0006():
    """V0006 (DESIGN): "popbox removes the marked ones atomically (all or none)"; RFC 1939
    s6: "-ERR some deleted messages not removed". STYLE s3: "a partial failure answers
    -ERR [SYS/TEMP], not +OK"."""
    respond = Responder(update_ok=False)
    exchange = talk(two(), b"DELE 1\r\nQUIT\r\n", respond=respond)
    assert exchange.output == R.deleted(1) + R.ERR_UPDATE_FAILED
    assert exchange.events == [Update((10,), ()), Signal.CLOSED]


def test_commands_pipelined_after_quit_are_not_run_rfc1939_s6():
    """RFC 1939 s6: "Whether the removal was successful or not, the server then releases
    any exclusive-access lock on the maildrop and closes the TCP connection." """
    exchange = talk(two(), b"QUIT\r\nDELE 1\r\nSTAT\r\n", respond=Responder())
    assert exchange.output == R.signing_off(0)
    assert exchange.events == [Update((), ()), Signal.CLOSED]


# -- store failures by kind (RFC 3206 response codes, chosen by server/store_errors.py) ----


def test_store_failure_with_sys_perm_says_an_administrator_must_act_rfc3206():
    """RFC 3206 s4 SYS/PERM: "a problem which is unlikely to be resolved without
    intervention"; the session goes on (V0001: the -ERR says why)."""
    conn = two()
    talk(conn, b"RETR 1\r\n")
    conn.store_failed(RespCode.SYS_PERM)
    assert sent(conn) == (
        b"-ERR [SYS/PERM] the mail store cannot do this until an administrator acts\r\n"
    )
    assert conn.state is State.TRANSACTION


def test_update_failure_with_sys_perm_drops_try_again_v0006_rfc3206():
    """V0006: none removed, and SYS/PERM does not invite a retry that will fail again."""
    conn = two()
    talk(conn, b"DELE 1\r\nQUIT\r\n")
    conn.update_finished(ok=False, code=RespCode.SYS_PERM)
    assert sent(conn) == b"-ERR [SYS/PERM] messages marked as deleted were not removed\r\n"
    assert conn.next_event() is Signal.CLOSED


def test_update_with_an_unknown_outcome_claims_neither_rfc1939_s6():
    """RFC 1939 s6 asks QUIT to reply "as to the status of this operation": when the
    store could not learn whether its commit took effect, the reply says exactly that."""
    conn = two()
    talk(conn, b"DELE 1\r\nQUIT\r\n")
    conn.update_unknown()
    assert sent(conn) == (
        b"-ERR [SYS/TEMP] could not learn whether messages marked as deleted were removed,"
        b" log in again to see\r\n"
    )
    assert conn.next_event() is Signal.CLOSED

"""The per-command objects (``Value`` subclasses) behave as the frozen dataclasses they replace.

Equality and hash by type and fields, the dataclass repr, positional and keyword ``case``
patterns, defaults, no attributes beyond the fields, and (compiled) read-only fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mypy.api
import pytest

from popbox.protocol import commands
from popbox.protocol.commands import Dele, List, Noop, Retr, Stat, Top, Uidl
from popbox.protocol.events import CommandRecord, Retrieve, Update
from popbox.protocol.phases import Authorization, Awaiting
from popbox.protocol.replies import Err, Ok, RespCode
from popbox.protocol.testing import message_info

if TYPE_CHECKING:
    from pathlib import Path

    from popbox.protocol.values import Value

INFO = message_info(7, 120)

HASHABLE: list[Value] = [
    Stat(),
    Noop(),
    List(),
    List(2),
    Uidl(),
    Uidl(3),
    Retr(1),
    Dele(4),
    Top(1, 0),
    Ok(),
    Ok("fine"),
    Err("no"),
    Err("no", RespCode.AUTH),
    Retrieve(1, INFO, None),
    Retrieve(1, INFO, 5),
    CommandRecord("RETR", ok=True),
]
# Awaiting holds a mutable phase: it compares by value, but hashing it fails.
SAMPLES: list[Value] = [*HASHABLE, Awaiting(Retrieve(1, INFO, None), Authorization())]


def rebuilt(value: Value) -> Value:
    """An equal, separate object: the same class called with the same field values."""
    return type(value)(*(getattr(value, name) for name in value.__match_args__))


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_equal_to_a_copy_with_the_same_fields(value: Value) -> None:
    copy = rebuilt(value)
    assert copy is not value
    assert copy == value
    assert not copy != value  # noqa: SIM202 - __ne__ is what is tested


@pytest.mark.parametrize("value", HASHABLE, ids=repr)
def test_hash_agrees_with_equality(value: Value) -> None:
    assert hash(rebuilt(value)) == hash(value)
    assert rebuilt(value) in set(HASHABLE)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (Retr(1), Retr(2)),
        (Retr(1), Dele(1)),  # same fields, other command
        (Stat(), Noop()),
        (List(), List(1)),
        (List(1), Uidl(1)),
        (Top(1, 0), Top(1, 1)),
        (Top(1, 0), Top(2, 0)),
        (Ok("x"), Err("x")),
        (Err("x"), Err("x", RespCode.SYS_TEMP)),
        (Retrieve(1, INFO, None), Retrieve(1, INFO, 0)),
        (Retrieve(1, INFO, None), Retrieve(1, message_info(8, 120), None)),
        (CommandRecord("RETR", ok=True), CommandRecord("RETR", ok=False)),
        (CommandRecord("RETR", ok=True), CommandRecord("DELE", ok=True)),
        (Retr(1), 1),
        (Retr(1), (1,)),
        (Stat(), None),
        (Ok(), Update((), ())),
    ],
)
def test_different_type_or_field_is_unequal(left: object, right: object) -> None:
    assert left != right
    assert right != left
    assert not left == right  # noqa: SIM201 - __eq__ is what is tested


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Stat(), "Stat()"),
        (List(), "List(msg=None)"),
        (Retr(12), "Retr(msg=12)"),
        (Top(3, 0), "Top(msg=3, lines=0)"),
        (Ok(), "Ok(text='')"),
        (Err("no", RespCode.AUTH), "Err(text='no', code=<RespCode.AUTH: 'AUTH'>)"),
        (CommandRecord("RETR", ok=True), "CommandRecord(verb='RETR', ok=True)"),
        (Retrieve(1, INFO, None), f"Retrieve(msg=1, info={INFO!r}, lines=None)"),
        (
            Awaiting(Retrieve(1, INFO, 2), Authorization()),
            (
                f"Awaiting(event=Retrieve(msg=1, info={INFO!r}, lines=2),"
                " resume=Authorization(pending_user=None, name_valid=True))"
            ),
        ),
    ],
)
def test_repr_is_the_dataclass_one(value: Value, text: str) -> None:
    assert repr(value) == text


def describe(command: object) -> str:  # noqa: PLR0911 - one arm per pattern
    match command:
        case Retr(msg) | Top(msg, 0):
            return f"whole or head of {msg}"
        case Top(msg=msg, lines=lines):
            return f"{lines} lines of {msg}"
        case List(None) | Uidl(None):
            return "all"
        case List(msg) | Uidl(msg) | Dele(msg):
            return f"one: {msg}"
        case Err(text, RespCode.AUTH):
            return f"auth: {text}"
        case Stat() | Noop():
            return "no arguments"
    return "no match"


@pytest.mark.parametrize(
    ("command", "description"),
    [
        (Retr(4), "whole or head of 4"),
        (Top(5, 0), "whole or head of 5"),
        (Top(5, 9), "9 lines of 5"),
        (List(), "all"),
        (Uidl(None), "all"),
        (List(2), "one: 2"),
        (Dele(3), "one: 3"),
        (Err("bad password", RespCode.AUTH), "auth: bad password"),
        (Err("bad password"), "no match"),
        (Noop(), "no arguments"),
        (Ok(), "no match"),
    ],
)
def test_case_patterns_match_by_field(command: object, description: str) -> None:
    assert describe(command) == description


def test_defaults() -> None:
    assert List().msg is None
    assert Uidl().msg is None
    assert Ok().text == ""
    assert Err("x").code is None


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_no_attributes_beyond_the_fields(value: Value) -> None:
    with pytest.raises(AttributeError):
        value.extra = 1  # type: ignore[attr-defined]


COMPILED = not commands.__file__.endswith(".py")


def test_assigning_a_field_is_a_type_error(tmp_path: Path) -> None:
    """What keeps the fields read-only in both builds: mypy (strict, as CI runs it)."""
    snippet = tmp_path / "assign.py"
    snippet.write_text("from popbox.protocol.commands import Retr\nRetr(1).msg = 2\n")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n")
    out, err, status = mypy.api.run(
        ["--config-file", str(config), "--no-incremental", str(snippet)]
    )
    assert status == 1, err
    assert 'Cannot assign to final attribute "msg"' in out


@pytest.mark.parametrize("value", [v for v in SAMPLES if v.__match_args__], ids=repr)
def test_fields_are_read_only_at_run_time_in_the_compiled_build(value: Value) -> None:
    """The compiled build also refuses at run time; the pure-Python one does not check
    (a refusing ``__setattr__`` would cost every ``__init__`` what it saved)."""
    name = value.__match_args__[0]
    if COMPILED:
        with pytest.raises(AttributeError, match="not writable"):
            setattr(value, name, getattr(value, name))
    else:
        setattr(value, name, getattr(value, name))
        assert type(value).__init__ is not object.__init__  # plain attributes, set in __init__

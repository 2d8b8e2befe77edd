"""Byte-exact dialogues per compat profile, kept as data in transcripts/ (issue 14).

Each file is what a client sees from one profile: greeting, CAPA before and after STLS
and under each login_type, failed and successful logins, an unknown and a wrong-state
command, STAT/LIST with estimated sizes, RETR, QUIT.  Every line names its source (a
public capture of Exchange, an RFC section, or [popbox] where no capture exists).  The
connection is configured the way ``popbox serve`` configures it: ``from_mapping`` gives
the profile's defaults and ``build_registry`` the SASL mechanisms.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from popbox.auth.registry import build_registry
from popbox.config import from_mapping
from popbox.protocol.connection import ConnectionSettings, Pop3Connection
from popbox.protocol.profiles import PROFILES, greeting
from popbox.protocol.testing import Responder, message_info, talk

TRANSCRIPTS = Path(__file__).parent / "transcripts"
WIRE_1 = b"Subject: one\r\n\r\nHello\r\n"
WIRE_2 = b"Subject: two\r\n\r\n..dot line\r\nend\r\n"  # stored stuffed; 32 octets unstuffed
MESSAGES = (
    (message_info(1, len(WIRE_1), stored_size=len(WIRE_1)), WIRE_1),
    (message_info(2, len(WIRE_2) - 1, stored_size=len(WIRE_2)), WIRE_2),
)
OAUTH = {"oauth_issuer": "https://id.example", "oauth_audience": "pop", "oauth_jwks": "jwks.json"}


@dataclass
class Step:
    client: bytes | None  # None: the greeting
    expected: list[bytes] = field(default_factory=list)


@dataclass
class Dialogue:
    options: dict[str, str]
    steps: list[Step] = field(default_factory=list)


def parse(path: Path) -> list[Dialogue]:
    """The dialogues of one transcript file; every S:/C: line must cite a source."""
    dialogues: list[Dialogue] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        if line.startswith("= "):
            options = dict(item.split("=", 1) for item in line[2:].split())
            dialogues.append(Dialogue(options, [Step(None)]))
            continue
        payload, tab, source = line[3:].partition("\t# ")
        assert tab, f"{path.name}:{number}: a line without its source"
        assert source.strip(), f"{path.name}:{number}: an empty source"
        if line.startswith("C: "):
            text = codecs.decode(payload, "unicode_escape")  # "\x01" spells a control byte
            dialogues[-1].steps.append(Step(text.encode("latin-1") + b"\r\n"))
        else:
            assert line.startswith("S: "), f"{path.name}:{number}: not S:, C:, = or #"
            dialogues[-1].steps[-1].expected.append(payload.encode("utf-8") + b"\r\n")
    return dialogues


def settings_for(options: dict[str, str], data_dir: Path) -> ConnectionSettings:
    raw: dict[str, object] = {
        "compat": options["compat"],
        "data_dir": str(data_dir),
        "pop3": {"login_type": options["login_type"]}
        | ({"exact_rfc822_size": False} if options.get("exact") == "false" else {}),
        "auth": OAUTH if options.get("oauth") == "true" else {},
    }
    config = from_mapping(raw)
    wire = PROFILES[config.compat]
    tls = options.get("tls") == "true"
    return ConnectionSettings(
        banner=greeting(wire, config.pop3.banner, options.get("host", "pop.example")),
        max_command_size=config.pop3.max_command_size,
        exact_rfc822_size=config.pop3.exact_rfc822_size,
        login_type=config.pop3.login_type,
        tls_active=tls,
        stls_available=not tls,
        sasl_mechanisms=build_registry(config).offered(),
        wire=wire,
    )


def _cases() -> list[tuple[str, int]]:
    return [
        (path.stem, index)
        for path in sorted(TRANSCRIPTS.glob("*.txt"))
        for index in range(len(parse(path)))
    ]


@pytest.mark.parametrize(("profile", "index"), _cases())
def test_profile_dialogue_is_byte_exact_issue14(profile: str, index: int, tmp_path: Path) -> None:
    """V0001, V0008, 2.1.4, 2.1.5, RFC 2449 s5: each profile answers exactly as its
    transcript says, line by line, CRLF included."""
    dialogue = parse(TRANSCRIPTS / f"{profile}.txt")[index]
    conn = Pop3Connection(settings_for(dialogue.options, tmp_path))
    respond = Responder(messages=MESSAGES)
    for step in dialogue.steps:
        sent = talk(conn, step.client, respond=respond).output if step.client else b""
        if step.client is None:
            sent = b"".join(conn.data_to_send())
        assert sent == b"".join(step.expected), step.client


def test_every_profile_has_a_transcript_issue14() -> None:
    """Issue 14: "A transcript test per profile"."""
    assert {path.stem for path in TRANSCRIPTS.glob("*.txt")} >= set(PROFILES) - {"rfc1939"}

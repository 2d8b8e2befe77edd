"""The protocol fuzzer, bounded, in every test run (issue 15: zero crashes).

Three passes over the targets of ``fuzz_targets.py`` (the sans-IO POP3 connection, RFC 1939
and RFC 2449 framing and states; the SASL mechanisms PLAIN RFC 4616, LOGIN, SCRAM
RFC 5802, NTLM MS-NLMP, OAUTHBEARER RFC 7628 and XOAUTH2; the NTLM message parsers):

- every input kept in ``corpus/TARGET/`` (seeds, and any input that once crashed);
- hypothesis, with inputs built from protocol words as well as raw bytes;
- atheris (libFuzzer, coverage-guided) over all of them for ``POPBOX_FUZZ_SECONDS``
  (20 by default); ``atheris_main.py`` says how to run it for longer by hand.

A target raises only on a bug, so each pass just runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_targets import SEPARATOR, TARGETS

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
SECONDS = int(os.environ.get("POPBOX_FUZZ_SECONDS", "20"))
NAMES = sorted(TARGETS)
CORPUS_FILES = sorted(path for path in CORPUS.glob("*/*") if path.is_file())

WORDS = [
    b"USER alice",
    b"PASS secret",
    b"USER",
    b"PASS",
    b"CAPA",
    b"STAT",
    b"LIST",
    b"UIDL",
    b"RETR",
    b"TOP",
    b"DELE",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"STLS",
    b"AUTH",
    b"AUTH PLAIN",
    b"AUTH GSSAPI",
    b"AUTH LOGIN",
    b"*",
    b"=",
    b"APOP",
    b"UTF8",
    b"LANG",
    b"1",
    b"2",
    b"0",
    b"-1",
    b"99999999999999999999",
    b" ",
    b"\t",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b".",
    b"\xff",
    b"AHNlY3JldA==",
    b"AGFsaWNlAHNlY3JldA==",
]


def test_every_target_has_a_corpus() -> None:
    assert {path.parent.name for path in CORPUS_FILES} == set(NAMES)


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_input_is_handled(path: Path) -> None:
    TARGETS[path.parent.name](path.read_bytes())


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=1500))
def test_arbitrary_bytes_are_handled(name: str, data: bytes) -> None:
    TARGETS[name](data)


protocol_words = st.lists(
    st.one_of(st.sampled_from(WORDS), st.binary(max_size=12)), max_size=60
).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=st.integers(0, 255), script=protocol_words)
def test_pop3_scripts_of_protocol_words_are_handled(head: int, script: bytes) -> None:
    """RFC 1939 s3: commands, arguments and line ends in any order, split anywhere."""
    TARGETS["pop3"](bytes([head]) + b"USER alice\r\nPASS secret\r\n" + script)


@pytest.mark.parametrize("name", ["plain", "login", "scram", "ntlm", "oauthbearer", "xoauth2"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.binary(max_size=300), min_size=1, max_size=5))
def test_sasl_exchanges_of_several_messages_are_handled(name: str, messages: list[bytes]) -> None:
    TARGETS[name](b"\x01" + SEPARATOR.join(m.replace(SEPARATOR, b"") for m in messages))


def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    """libFuzzer exits 0 after ``-max_total_time`` when no input made a target raise.

    One process for every target (``atheris_main.py all``), started from the corpus
    with each file prefixed by its target's number.
    """
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for path in CORPUS_FILES:
        number = NAMES.index(path.parent.name)
        (seeds / f"{path.parent.name}-{path.name}").write_bytes(bytes([number]) + path.read_bytes())
    found = tmp_path / "new"
    found.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "atheris_main.py"),
            "all",
            f"-max_total_time={SECONDS}",
            "-timeout=20",
            f"-artifact_prefix={tmp_path}/",
            str(found),
            str(seeds),
        ],
        capture_output=True,
        timeout=SECONDS + 120,
        check=False,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0, (crashes, done.stderr.decode(errors="replace")[-3000:])
    assert b"Done " in done.stderr, done.stderr[-2000:]

"""LANG (RFC 6856 s3): the languages of popbox's reply texts, and choosing one.

popbox's texts are English only.  RFC 6856 s3.2 asks for a language listing and for
"+OK", the exact tag selected and text; ``i-default`` (RFC 2277 s4.5, text meant for an
unknown reader: English here) is listed too, as the issue asks.  Choosing either changes
nothing in the texts, so there is no per-session state to keep.  Matching is RFC 4647
s3.4 lookup: a range like ``en-GB`` falls back, subtag by subtag, to ``en``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from popbox.protocol.replies import Err, Ok, multiline

if TYPE_CHECKING:
    from popbox.protocol.commands import Lang

__all__ = ["LANGUAGES", "answer"]

# Tag and its name in the language itself (RFC 6856 s3.2 language listing).
LANGUAGES: dict[str, str] = {"en": "English", "i-default": "Default language (English)"}
PREFERRED = "en"  # what "LANG *" selects (RFC 6856 s3.2: the administrator's choice)
# RFC 4647 s2.1 basic-language-range: 1*8ALPHA *("-" 1*8alphanum) / "*"
_BASIC_RANGE = re.compile(r"\*|[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")


def answer(command: Lang) -> Ok | Err | bytes:
    """The reply to ``LANG`` (a listing) or ``LANG range`` (the tag chosen, or -ERR)."""
    language_range = command.language_range
    if language_range is None:
        listing = [f"{tag} {name}" for tag, name in LANGUAGES.items()]
        return multiline(Ok("language listing follows"), listing)
    if not _BASIC_RANGE.fullmatch(language_range):
        # Not echoed: outside UTF-8 mode no non-ASCII text may be sent (RFC 6856 s2.1).
        return Err("invalid language range")
    tag = _lookup(language_range)
    if tag is None:
        return Err(f"invalid language {language_range}")
    return Ok(f"{tag} language changed")


def _lookup(language_range: str) -> str | None:
    if language_range == "*":
        return PREFERRED
    candidate = language_range.lower()
    while candidate:
        if candidate in LANGUAGES:
            return candidate
        candidate = candidate.rpartition("-")[0]  # RFC 4647 s3.4: drop the last subtag
    return None

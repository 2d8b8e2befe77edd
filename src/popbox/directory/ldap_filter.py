"""The search filter for one login: the config's template with the login's parts escaped.

RFC 4515 section 3: in an assertion value, ``*``, ``(``, ``)``, ``\\`` and NUL must be
written as ``\\2a``, ``\\28``, ``\\29``, ``\\5c`` and ``\\00``.  With that, whatever a
client sends as its login name (``*)(uid=*``, ``*``, a lone backslash) stays one literal
value and can neither widen the filter nor add a clause (``ldapwire.filters.escape_value``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.ldapwire.filters import escape_value

if TYPE_CHECKING:
    from popbox.config.ldap import FilterTemplate
    from popbox.directory.base import LoginName

__all__ = ["NO_MATCH_VALUE", "render_filter"]

# What a login part no entry can match is replaced by (RFC 4515 sends it as \00): the
# search is still made, with the same shape, so such a login costs what any unknown
# one costs (V0009), and no real attribute value contains a NUL.
NO_MATCH_VALUE = "\x00"


def render_filter(template: FilterTemplate, login: LoginName) -> tuple[str, bool]:
    """The filter for ``login`` and whether it can match anyone.

    A login part the template needs that is empty, or not encodable as UTF-8, can
    match no entry; the filter then carries ``NO_MATCH_VALUE`` in every placeholder.
    """
    values: list[str] = [getattr(login, field) for field in template.fields]
    usable = all(values) and all(_is_utf8(value) for value in values)
    if not usable:
        values = [NO_MATCH_VALUE] * len(values)
    pieces = [template.literals[0]]
    for value, literal in zip(values, template.literals[1:], strict=True):
        pieces.append(escape_value(value))
        pieces.append(literal)
    return "".join(pieces), usable


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True

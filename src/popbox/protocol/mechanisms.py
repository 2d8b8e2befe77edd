"""The SASL mechanism names popbox implements, as AUTH and CAPA's SASL line carry them.

The one place that spells them (RFC 4422 s3.1 names; [MS-OXPOP3] for NTLM).  A leaf
module: the configuration validates ``auth.mechanisms`` against ``MECHANISMS``,
``auth/registry.py`` builds the offered mechanisms from them and each mechanism takes
its own name from here, so none of those needs to import another for a string.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_MECHANISMS",
    "GSSAPI",
    "LOGIN",
    "MECHANISMS",
    "NTLM",
    "OAUTHBEARER",
    "OAUTH_MECHANISMS",
    "PLAIN",
    "SCRAM_SHA_256",
    "XOAUTH2",
]

PLAIN: Final = "PLAIN"
LOGIN: Final = "LOGIN"
SCRAM_SHA_256: Final = "SCRAM-SHA-256"
OAUTHBEARER: Final = "OAUTHBEARER"
XOAUTH2: Final = "XOAUTH2"
NTLM: Final = "NTLM"
GSSAPI: Final = "GSSAPI"

# Every name ``auth/registry.py`` can build; ``auth.mechanisms`` picks from these.
MECHANISMS: Final = (PLAIN, LOGIN, SCRAM_SHA_256, OAUTHBEARER, XOAUTH2, NTLM, GSSAPI)
# Offered when the configuration says nothing: the ones that need no further settings.
DEFAULT_MECHANISMS: Final = (PLAIN, LOGIN, SCRAM_SHA_256)
# Mechanisms that need the oauth_* settings.
OAUTH_MECHANISMS: Final = frozenset({OAUTHBEARER, XOAUTH2})

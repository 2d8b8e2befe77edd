"""Locally generated signing keys, a JWKS for them, and JWT access tokens for tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

if TYPE_CHECKING:
    from pathlib import Path

ISSUER = "https://idp.example.test"
AUDIENCE = "pop3.example.test"


@dataclass
class Issuer:
    """An identity provider in miniature: keys, their JWKS, and token minting."""

    rsa_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    ec_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa_key.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec_key.public_key()))
        return {
            "keys": [
                {**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
                {**ec_jwk, "kid": "ec-1", "use": "sig"},
            ]
        }

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()), encoding="utf-8")
        return path

    def token(
        self,
        *,
        kid: str = "rsa-1",
        algorithm: str = "RS256",
        key: Any = None,
        lifetime: float = 600,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + lifetime, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        signer = key or (self.ec_key if algorithm.startswith("ES") else self.rsa_key)
        return jwt.encode(body, signer, algorithm=algorithm, headers={"kid": kid})


def oauth_settings(jwks: str, **overrides: Any) -> dict[str, Any]:
    """The [auth] keys for both bearer mechanisms with this JWKS."""
    return {
        "mechanisms": ["PLAIN", "OAUTHBEARER", "XOAUTH2"],
        "oauth_issuer": ISSUER,
        "oauth_audience": AUDIENCE,
        "oauth_jwks": jwks,
        **overrides,
    }


def oauthbearer(token: str, authzid: str = "") -> bytes:
    """RFC 7628 s3.1 client response."""
    gs2 = f"n,a={authzid}," if authzid else "n,,"
    return f"{gs2}\x01host=localhost\x01port=110\x01auth=Bearer {token}\x01\x01".encode()


def xoauth2(token: str, user: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()

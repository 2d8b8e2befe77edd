"""One certificate issuance (RFC 8555 section 7), with certbot's ``acme`` library.

Theory of operation: ``issue`` is synchronous (``acme`` speaks HTTP through requests)
and is run in a thread by the manager, never on the event loop.  It finds or creates the
account for the key in ``data_dir/acme/account.pem`` (section 7.3: a second newAccount
with the same key returns the existing account), orders a certificate for the domains,
answers each authorization's HTTP-01 challenge by publishing the key authorization to
the challenge listener, waits for the CA to validate and finalizes with a CSR for a
fresh key.  Every failure is an ``AcmeError`` whose message is one line: the CA's
problem document, the network error, or the challenge that failed, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.errors import Error as JoseError
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from acme import challenges, client, crypto_util, errors, messages
from popbox import __version__
from popbox.acme.files import new_private_key_pem
from popbox.server.tls import TlsConfigError

if TYPE_CHECKING:
    from popbox.acme.challenges import ChallengeTokens
    from popbox.config import TlsConfig

__all__ = ["AcmeError", "IssueSettings", "issue"]

# Seconds one HTTP request to the CA may take; the whole issuance has its own deadline.
_NETWORK_TIMEOUT = 30


class AcmeError(TlsConfigError):
    """A certificate could not be obtained; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class IssueSettings:
    """What one issuance needs from ``[tls]``."""

    directory: str
    domains: tuple[str, ...]
    contact: str
    ca_file: str
    timeout: float

    @classmethod
    def from_config(cls, tls: TlsConfig) -> IssueSettings:
        return cls(
            directory=tls.acme_directory,
            domains=tls.acme_domains,
            contact=tls.acme_contact,
            ca_file=tls.acme_ca_file,
            timeout=tls.acme_timeout,
        )


def issue(
    settings: IssueSettings, account_key_pem: bytes, tokens: ChallengeTokens
) -> tuple[bytes, bytes]:
    """Obtain a certificate; returns (full chain PEM, private key PEM).

    Blocks for up to ``settings.timeout`` seconds (plus one request's timeout).
    """
    deadline = time.monotonic() + settings.timeout
    net = _network(settings, account_key_pem)
    try:
        acme = _account(settings, net)
        key_pem = new_private_key_pem()
        order = acme.new_order(crypto_util.make_csr(key_pem, list(settings.domains)))
        published = _answer_challenges(acme, order, tokens)
        try:
            wall_deadline = dt.datetime.now() + dt.timedelta(  # noqa: DTZ005 - acme compares naive local times
                seconds=max(1.0, deadline - time.monotonic())
            )
            order = acme.poll_and_finalize(order, deadline=wall_deadline)
        finally:
            for token in published:
                tokens.withdraw(token)
    except errors.ValidationError as exc:
        raise AcmeError(f"{settings.directory}: {_validation_failure(exc)}") from None
    except errors.TimeoutError:
        raise AcmeError(
            f"{settings.directory}: no certificate within tls.acme_timeout ({settings.timeout:g} s)"
        ) from None
    except messages.Error as exc:
        raise AcmeError(f"{settings.directory}: the CA refused: {_problem(exc)}") from None
    except errors.Error as exc:
        raise AcmeError(f"{settings.directory}: {exc or type(exc).__name__}") from None
    except requests.exceptions.RequestException as exc:
        raise AcmeError(f"{settings.directory}: {_network_failure(exc)}") from None
    except (JoseError, ValueError) as exc:
        raise AcmeError(f"{settings.directory}: not an ACME server's answer: {exc}") from None
    finally:
        # Its HTTPS connections, closed now rather than whenever the collector gets to them.
        net.session.close()
    return order.fullchain_pem.encode("ascii"), key_pem


def _network(settings: IssueSettings, account_key_pem: bytes) -> client.ClientNetwork:
    try:
        key = serialization.load_pem_private_key(account_key_pem, password=None)
    except (ValueError, TypeError):
        msg = "the ACME account key cannot be read (delete it to have a new one made)"
        raise AcmeError(msg) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        msg = "the ACME account key is not an EC key (delete it to have a new one made)"
        raise AcmeError(msg)
    return client.ClientNetwork(
        JWKEC(key=key),
        alg=ES256,
        # requests' ``verify`` takes a CA bundle path as well as a bool, and acme passes
        # this value straight to it; acme's annotation says bool only.
        verify_ssl=cast("bool", settings.ca_file or True),
        user_agent=f"popbox/{__version__}",
        timeout=_NETWORK_TIMEOUT,
    )


def _account(settings: IssueSettings, net: client.ClientNetwork) -> client.ClientV2:
    """The CA's directory and this key's account (made on first use)."""
    directory = client.ClientV2.get_directory(settings.directory, net)
    acme = client.ClientV2(directory, net=net)
    registration = messages.NewRegistration.from_data(
        email=settings.contact or None, terms_of_service_agreed=True
    )
    try:
        acme.new_account(registration)
    except errors.ConflictError as exc:
        # The key has an account already (RFC 8555 s7.3.1): use it.
        acme.query_registration(messages.RegistrationResource(uri=exc.location, body=registration))
    return acme


def _answer_challenges(
    acme: client.ClientV2, order: messages.OrderResource, tokens: ChallengeTokens
) -> list[str]:
    published: list[str] = []
    for authorization in order.authorizations:
        if authorization.body.status == messages.STATUS_VALID:
            continue  # validated recently for this account; nothing to prove
        challenge = next(
            (c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)),
            None,
        )
        name = authorization.body.identifier.value
        if challenge is None:
            msg = f"the CA offers no HTTP-01 challenge for {name}"
            raise AcmeError(msg)
        response, validation = challenge.response_and_validation(acme.net.key)
        token = challenge.chall.encode("token")
        tokens.publish(token, validation)
        published.append(token)
        acme.answer_challenge(challenge, response)
    return published


def _problem(error: messages.Error) -> str:
    kind = error.typ.removeprefix("urn:ietf:params:acme:error:")
    return f"{error.detail} ({kind})" if error.detail else kind


def _validation_failure(exc: errors.ValidationError) -> str:
    for authorization in exc.failed_authzrs:
        for challenge in authorization.body.challenges:
            if challenge.error is not None:
                name = authorization.body.identifier.value
                return (
                    f"{name}: {challenge.chall.typ} validation failed: {_problem(challenge.error)}"
                )
    return "validation failed"


def _network_failure(exc: requests.exceptions.RequestException) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification of the directory failed (set tls.acme_ca_file for a private CA)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot connect (is the directory URL right and the CA reachable?)"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {_NETWORK_TIMEOUT} s"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

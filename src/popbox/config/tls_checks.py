"""Checks of the ``[tls]`` section, run once at load: the certificate files or ACME."""

from __future__ import annotations

import math
import re

from popbox.config.checks import parse_address
from popbox.config.sections import ConfigError, TlsConfig

__all__ = ["check_tls"]

# RFC 1123 section 2.1 host names: labels of letters, digits and hyphens, not starting or
# ending with a hyphen, at most 63 octets each and 253 in all.  A CA refuses anything else
# (RFC 8555 section 7.1.4 identifiers are DNS names), so popbox says so before asking.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_MAX_NAME = 253
_MAX_DOMAINS = 100  # Let's Encrypt's limit of names per certificate


def check_tls(tls: TlsConfig) -> None:
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError("tls.cert_file and tls.key_file: set both or neither")
    if not tls.acme_directory:
        if tls.acme_domains:
            raise ConfigError("tls.acme_domains: set tls.acme_directory too (the CA's URL)")
        return
    _check_acme(tls)


def _check_acme(tls: TlsConfig) -> None:
    if tls.cert_file:
        raise ConfigError(
            "tls.acme_directory: leave tls.cert_file and tls.key_file empty; "
            "with ACME popbox keeps its certificate in data_dir/acme"
        )
    if not tls.acme_directory.startswith("https://"):
        raise ConfigError(
            f"tls.acme_directory: {tls.acme_directory!r} must be an https:// URL (RFC 8555 s6.1)"
        )
    _check_domains(tls.acme_domains)
    contact = tls.acme_contact
    if contact and (contact.count("@") != 1 or any(c.isspace() or c in ",:" for c in contact)):
        raise ConfigError(f"tls.acme_contact: {contact!r} is not an e-mail address")
    parse_address(tls.acme_http_listen, "tls.acme_http_listen")
    for key in ("acme_renew_before", "acme_retry_interval", "acme_timeout"):
        seconds = getattr(tls, key)
        if not math.isfinite(seconds) or seconds <= 0:
            raise ConfigError(f"tls.{key}: must be a number of seconds greater than 0")


def _check_domains(domains: tuple[str, ...]) -> None:
    if not domains:
        raise ConfigError("tls.acme_domains: name at least one domain for the certificate")
    if len(domains) > _MAX_DOMAINS:
        raise ConfigError(f"tls.acme_domains: at most {_MAX_DOMAINS} names per certificate")
    for domain in domains:
        _check_domain(domain)
    if len({d.lower().removesuffix(".") for d in domains}) != len(domains):
        raise ConfigError("tls.acme_domains: a domain is listed twice")


def _check_domain(domain: str) -> None:
    if domain.startswith("*."):
        raise ConfigError(
            f"tls.acme_domains: {domain!r}: a wildcard name needs the DNS-01 challenge, "
            "and popbox answers HTTP-01 only; list each name"
        )
    name = domain.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > _MAX_NAME or not all(_LABEL.match(label) for label in labels):
        raise ConfigError(f"tls.acme_domains: {domain!r} is not a valid DNS name")
    if labels[-1].isdigit():
        raise ConfigError(
            f"tls.acme_domains: {domain!r}: an IP address is not a domain name "
            "(CAs issue for names)"
        )

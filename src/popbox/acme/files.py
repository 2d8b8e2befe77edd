"""What ACME keeps in ``data_dir/acme``: the account key, the certificate and its key.

``account.pem`` is the ACME account's key (EC P-256), created once with mode 0600: the
account is found again with it on every start.  ``cert.pem`` (the full chain, leaf
first) and ``key.pem`` (mode 0600) are what the TLS listeners load.  Each file is
replaced in one rename (``write_atomically``), the key before the certificate, and the
listeners are told to reload only once both are in place.  A pair left mismatched by a
crash between the two renames is treated as no certificate at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from popbox.server.tls import (
    ACME_DIR,
    TlsConfigError,
    acme_certificate,
    check_pair,
    write_atomically,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["AcmeFiles", "CertificateInfo", "new_private_key_pem", "utc"]


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What the renewal schedule needs to know about the certificate in use."""

    not_before: float  # POSIX seconds
    not_after: float
    names: frozenset[str]  # its DNS subject alternative names, lower case
    serial: int

    def renewal_due(self, renew_before: float) -> float:
        """When to renew: ``renew_before`` ahead of expiry, or halfway through a shorter
        lifetime (so a short-lived certificate is not renewed again at once)."""
        lifetime = self.not_after - self.not_before
        return self.not_after - min(renew_before, lifetime / 2)


@dataclass(frozen=True, slots=True)
class AcmeFiles:
    """The paths of ``data_dir/acme`` and reading and writing them."""

    directory: Path
    cert: Path
    key: Path

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AcmeFiles:
        cert, key = acme_certificate(data_dir)  # what the TLS listeners load
        return cls(data_dir / ACME_DIR, cert, key)

    @property
    def account_key(self) -> Path:
        return self.directory / "account.pem"

    def account_key_pem(self) -> bytes:
        """The account key, generated and written (mode 0600) the first time."""
        try:
            return self.account_key.read_bytes()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TlsConfigError(f"ACME account key {self.account_key}: {exc.strerror}") from exc
        pem = new_private_key_pem()
        self._write(self.account_key, pem, mode=0o600)
        return pem

    def current(self) -> CertificateInfo | None:
        """The installed certificate, or None when there is none usable (missing,
        unreadable, or its key does not match)."""
        try:
            check_pair(self.cert, self.key)
            leaf = x509.load_pem_x509_certificate(self.cert.read_bytes())
        except (OSError, ValueError, TlsConfigError):
            return None
        try:
            names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            dns = frozenset(n.lower() for n in names.value.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            dns = frozenset()
        return CertificateInfo(
            not_before=leaf.not_valid_before_utc.timestamp(),
            not_after=leaf.not_valid_after_utc.timestamp(),
            names=dns,
            serial=leaf.serial_number,
        )

    def install(self, chain_pem: bytes, key_pem: bytes) -> CertificateInfo:
        """Write a new certificate and its key; returns what was written."""
        # Parsed first, so that a CA's unusable answer never replaces a working pair.
        x509.load_pem_x509_certificates(chain_pem)
        self._write(self.key, key_pem, mode=0o600)
        self._write(self.cert, chain_pem, mode=0o644)
        info = self.current()
        if info is None:
            raise TlsConfigError(f"the certificate written to {self.cert} does not load")
        return info

    def _write(self, path: Path, data: bytes, *, mode: int) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomically(path, data, mode=mode)
        except OSError as exc:
            raise TlsConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc


def new_private_key_pem() -> bytes:
    """A new EC P-256 key in PKCS#8 PEM: accepted by every CA and by every TLS client."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def utc(timestamp: float) -> str:
    """A POSIX time as an ISO 8601 UTC string, for log lines."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")

"""TLS material for the POP3 and LMTP listeners.

Theory of operation: `load_or_create_certificate` turns the `[tls]` config into two file
paths, generating a self-signed certificate in the data directory when none is
configured, so that `popbox demo` and a first `popbox serve` offer STLS and port 995
without any setup. `server_context` turns those files into an `ssl.SSLContext`.
`TlsContextHolder` keeps the current context and rebuilds it on `reload()` (SIGHUP).

This module never touches a socket: the listener passes `holder.context` to
`asyncio.start_server(ssl=...)` or `StreamWriter.start_tls()`. Every context the holder
builds switches each new handshake over to the holder's *current* context (through the
SNI callback, which OpenSSL runs for every ClientHello), so a context captured once at
listener start still serves the reloaded certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import platform
import secrets
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography.hazmat.primitives.asymmetric.types import (
        CertificatePublicKeyTypes,
        PrivateKeyTypes,
        PublicKeyTypes,
    )

__all__ = [
    "ACME_DIR",
    "CERT_VALIDITY",
    "TLS12_CIPHERS",
    "TlsConfigError",
    "TlsContextHolder",
    "acme_certificate",
    "check_pair",
    "load_or_create_certificate",
    "server_context",
    "write_atomically",
]

# 825 days is the longest lifetime Apple platforms accept for a TLS server certificate,
# so the generated certificate can at least be trusted by hand on every client.
CERT_VALIDITY: Final = dt.timedelta(days=825)
# Regenerate a generated certificate this long before it expires, so a long-running
# demo or test install never starts with a certificate about to lapse.
_RENEW_BEFORE: Final = dt.timedelta(days=30)
# Tolerate clients whose clock is a little behind ours.
_BACKDATE: Final = dt.timedelta(minutes=5)

# TLS 1.2 suites: forward secrecy (ECDHE) and AEAD (AES-GCM, ChaCha20-Poly1305) only,
# as Mozilla's "intermediate" profile (v5.7); its DHE suites are left out because the
# server loads no DH parameters, so OpenSSL could never choose them. Without this list
# Python's defaults also offer the CBC suites (ECDHE-*-AES*-SHA256/SHA384).
TLS12_CIPHERS: Final = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)

_GENERATED_DIR: Final = "tls"
ACME_DIR: Final = "acme"  # data_dir/acme: an ACME certificate (popbox/acme/files.py)
_GENERATED_CERT: Final = "cert.pem"
_GENERATED_KEY: Final = "key.pem"


class TlsConfigError(Exception):
    """The configured certificate or key cannot be used; the message names the file."""


def load_or_create_certificate(cert_file: str, key_file: str, data_dir: Path) -> tuple[Path, Path]:
    """Return the (certificate, key) paths the server should use.

    With both `cert_file` and `key_file` empty, a self-signed certificate in
    `data_dir/tls/` is reused, or generated when missing, unreadable or near expiry.
    With both given, the files must exist and be readable; nothing is generated.
    Setting only one of the two is an error. Raises `TlsConfigError` naming the file.
    """
    if not cert_file and not key_file:
        return _generated_certificate(data_dir)
    if not cert_file or not key_file:
        missing = "tls.cert_file" if not cert_file else "tls.key_file"
        raise TlsConfigError(
            f"{missing} is empty: set both tls.cert_file and tls.key_file, "
            "or leave both empty to use a generated self-signed certificate"
        )
    cert, key = Path(cert_file), Path(key_file)
    _check_readable(cert, "tls.cert_file")
    _check_readable(key, "tls.key_file")
    return cert, key


def acme_certificate(data_dir: Path) -> tuple[Path, Path]:
    """The (certificate, key) paths of a certificate obtained by ACME."""
    return data_dir / ACME_DIR / _GENERATED_CERT, data_dir / ACME_DIR / _GENERATED_KEY


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Build a server-side context for `cert` (a PEM chain, leaf first) and `key`.

    TLS 1.2 is the minimum (DESIGN.md section 4), and TLS 1.2 offers only
    `TLS12_CIPHERS` (TLS 1.3's suites are all AEAD already). Raises `TlsConfigError`
    naming the file at fault when the files cannot be read, are not PEM, the key needs
    a passphrase, or the key does not belong to the certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    # Compression enables CRIME-style attacks; client renegotiation is a cheap way to
    # make the server burn CPU. Server preference lets our cipher order win.
    context.options |= (
        ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    )
    check_pair(cert, key)
    try:
        context.load_cert_chain(cert, key, password=_refuse_passphrase(key))
    except ssl.SSLError as exc:
        # check_pair accepted the files, so OpenSSL objects to something cryptography
        # does not (an unsupported key type, say).
        reason = exc.reason or exc.strerror or "unusable"
        raise TlsConfigError(f"cannot use TLS certificate {cert} with key {key}: {reason}") from exc
    except OSError as exc:
        raise TlsConfigError(
            f"cannot read TLS certificate {cert} or key {key}: {exc.strerror}"
        ) from exc
    return context


def check_pair(cert: Path, key: Path) -> None:
    """Raise `TlsConfigError` naming the file unless `cert` and `key` make a usable pair.

    OpenSSL's own errors ("PEM lib", "KEY_VALUES_MISMATCH") do not say which of the two
    files is wrong, so each is parsed here first.
    """
    leaf = _read_certificate(cert)
    private_key = _read_key(key)
    if _public_der(private_key.public_key()) != _public_der(leaf.public_key()):
        raise TlsConfigError(
            f"TLS key {key} does not belong to the certificate {cert} (their public keys differ)"
        )


def _read_certificate(path: Path) -> x509.Certificate:
    data = _read_file(path, "TLS certificate")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsConfigError(
            f"TLS certificate {path}: not a PEM certificate "
            "(a file starting with -----BEGIN CERTIFICATE----- is expected)"
        ) from None
    return chain[0]


def _read_key(path: Path) -> PrivateKeyTypes:
    data = _read_file(path, "TLS key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying "this key needs a password"
        raise _passphrase_error(path) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsConfigError(
            f"TLS key {path}: not a PEM private key "
            "(a file starting with -----BEGIN PRIVATE KEY----- is expected)"
        ) from None


def _read_file(path: Path, what: str) -> bytes:
    _check_readable(path, what)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{what} {path}: cannot read it: {exc.strerror}") from None


def _public_der(public_key: PublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class TlsContextHolder:
    """The server's current TLS context, rebuilt from the same files on `reload()`.

    Handshakes already in progress or finished keep the context they started with;
    every new handshake, even on a context obtained before a reload, uses the newest.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self._cert = cert
        self._key = key
        self._context = self._build()

    @property
    def cert_path(self) -> Path:
        return self._cert

    @property
    def key_path(self) -> Path:
        return self._key

    @property
    def context(self) -> ssl.SSLContext:
        return self._context

    def reload(self) -> ssl.SSLContext:
        """Rebuild the context from the files and make it current.

        On `TlsConfigError` the previous context stays in use, so a botched
        certificate renewal followed by SIGHUP does not take the listeners down.
        """
        self._context = self._build()
        return self._context

    def _build(self) -> ssl.SSLContext:
        context = server_context(self._cert, self._key)
        context.sni_callback = self._use_current_context
        return context

    def _use_current_context(
        self, ssl_object: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _: object
    ) -> None:
        # Returning None lets the handshake continue (no TLS alert).
        if ssl_object.context is not self._context:
            ssl_object.context = self._context


def _check_readable(path: Path, what: str) -> None:
    if path.is_dir():
        raise TlsConfigError(f"{what}: {path} is a directory, not a file")
    if not path.is_file():
        raise TlsConfigError(f"{what}: {path} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise TlsConfigError(f"{what}: {path} is not readable by this user")


def _passphrase_error(key: Path) -> TlsConfigError:
    return TlsConfigError(
        f"TLS key {key} is encrypted with a passphrase; popbox needs an unencrypted key "
        "(protect it with file permissions instead)"
    )


def _refuse_passphrase(key: Path) -> Callable[[], str]:
    # Without a callback OpenSSL would prompt on the terminal for a passphrase, which
    # hangs a daemon (or a SIGHUP reload) forever. Raising here aborts the load instead.
    def callback() -> str:
        raise _passphrase_error(key)

    return callback


def _generated_certificate(data_dir: Path) -> tuple[Path, Path]:
    tls_dir = data_dir / _GENERATED_DIR
    cert, key = tls_dir / _GENERATED_CERT, tls_dir / _GENERATED_KEY
    if _is_reusable(cert, key):
        return cert, key
    try:
        tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_pem, cert_pem = _self_signed_pem()
        # Key first: a certificate on disk then always has its key next to it, and each
        # file appears whole (rename is atomic) even if we are killed mid-write.
        write_atomically(key, key_pem, mode=0o600)
        write_atomically(cert, cert_pem, mode=0o644)
    except OSError as exc:
        raise TlsConfigError(
            f"cannot write generated TLS certificate to {tls_dir}: {exc.strerror}"
        ) from exc
    return cert, key


def _is_reusable(cert: Path, key: Path) -> bool:
    # A pair whose key does not match (written by two processes at once by an older
    # version) is generated again rather than refused for ever.
    try:
        check_pair(cert, key)
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError, TlsConfigError):
        return False
    return certificate.not_valid_after_utc - _RENEW_BEFORE > dt.datetime.now(dt.UTC)


def write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` by ``data`` (created with ``mode``) in one rename, synced first."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp creates the file 0600, so the key is never readable by others.
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _subject_alt_names() -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        x509.IPAddress(ipaddress.IPv6Address("::1")),
    ]
    hostname = platform.node()
    # A hostname that is not a plain ASCII DNS name (empty, or with odd characters)
    # would make the certificate invalid; the loopback names are enough then.
    if hostname and hostname != "localhost" and hostname.isascii() and " " not in hostname:
        names.append(x509.DNSName(hostname))
    return names


def _self_signed_pem() -> tuple[bytes, bytes]:
    """Return (key PEM, certificate PEM) for a new EC P-256 self-signed certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "popbox self-signed"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        # RFC 5280 4.1.2.2: positive, at most 20 octets; 159 random bits fit.
        .serial_number(secrets.randbits(159) | 1)
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)

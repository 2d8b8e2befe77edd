"""Certificate handling and TLS policy of popbox.server.tls.

Handshakes run over in-memory BIOs: both ends are real OpenSSL TLS state machines, only
the transport is a pair of buffers, so the tests need no ports and cannot hang.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import ssl
import stat
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from popbox.server.tls import (
    TlsConfigError,
    TlsContextHolder,
    load_or_create_certificate,
    server_context,
)

if TYPE_CHECKING:
    from pathlib import Path


def handshake(
    client: ssl.SSLContext, server: ssl.SSLContext, server_hostname: str = "localhost"
) -> ssl.SSLObject:
    """Run a full handshake between the two contexts; return the client's end."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_end = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server_end = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client_end), ("server", server_end)):
            if done[name]:
                continue
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                continue
            done[name] = True
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return client_end
    pytest.fail("handshake did not finish")


def trusting_client(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def legacy_client(max_version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers only TLS <= max_version, as an old mail client would."""
    with warnings.catch_warnings():
        # Naming TLS 1.0/1.1 is deprecated in Python, which is the point of the test.
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        # SECLEVEL=0 lets the client itself offer TLS 1.0/1.1, so a failure below is
        # the server refusing, not the client's OpenSSL policy.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = max_version
    return context


def peer_certificate(end: ssl.SSLObject) -> x509.Certificate:
    der = end.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.fixture
def generated(tmp_path: Path) -> tuple[Path, Path]:
    return load_or_create_certificate("", "", tmp_path)


# --- generated certificate ---------------------------------------------------------------


def test_empty_config_generates_self_signed_certificate_in_data_dir(tmp_path: Path) -> None:
    cert, key = load_or_create_certificate("", "", tmp_path)

    assert cert == tmp_path / "tls" / "cert.pem"
    assert key == tmp_path / "tls" / "key.pem"
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    assert certificate.issuer == certificate.subject
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    # 825 days, plus the few minutes it is backdated for clients with slow clocks.
    assert dt.timedelta(days=825) <= lifetime <= dt.timedelta(days=825, hours=1)


def test_generated_certificate_names_localhost_and_loopback(generated) -> None:
    cert, _ = generated
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_generated_key_is_private_to_the_owner(generated) -> None:
    cert, key = generated

    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.parent.stat().st_mode) == 0o700


def test_generated_certificate_is_reused_on_next_start(tmp_path: Path) -> None:
    first = load_or_create_certificate("", "", tmp_path)
    pem = first[0].read_bytes()

    second = load_or_create_certificate("", "", tmp_path)

    assert second == first
    assert second[0].read_bytes() == pem


def test_generated_certificate_is_replaced_when_its_key_is_missing(tmp_path: Path) -> None:
    cert, key = load_or_create_certificate("", "", tmp_path)
    pem = cert.read_bytes()
    key.unlink()

    load_or_create_certificate("", "", tmp_path)

    assert key.is_file()
    assert cert.read_bytes() != pem
    server_context(cert, key)


def test_generated_certificate_is_replaced_when_corrupt(tmp_path: Path) -> None:
    cert, key = load_or_create_certificate("", "", tmp_path)
    cert.write_bytes(b"not a certificate")

    load_or_create_certificate("", "", tmp_path)

    server_context(cert, key)


def test_unwritable_data_dir_is_named(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("a file where the data directory should be\n")

    with pytest.raises(TlsConfigError, match=r"data/tls"):
        load_or_create_certificate("", "", not_a_dir)


def test_rfc2595_client_verifying_localhost_accepts_generated_certificate(generated) -> None:
    """RFC 2595 s2.4: the client MUST check its understanding of the server hostname
    against the server's identity as presented in the server Certificate message."""
    cert, key = generated

    for host in ("localhost", "127.0.0.1"):
        end = handshake(trusting_client(cert), server_context(cert, key), server_hostname=host)
        assert end.version() in {"TLSv1.2", "TLSv1.3"}


# --- configured certificate --------------------------------------------------------------


def test_configured_files_are_used_as_given(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("mail.example.test")
    cert, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))

    assert load_or_create_certificate(str(cert), str(key), tmp_path / "data") == (cert, key)
    assert not (tmp_path / "data").exists()

    client = ssl.create_default_context()
    ca.configure_trust(client)
    end = handshake(client, server_context(cert, key), server_hostname="mail.example.test")
    assert peer_certificate(end) == x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())


def test_missing_configured_certificate_is_named(tmp_path: Path, generated) -> None:
    _, key = generated
    missing = tmp_path / "nope.pem"

    with pytest.raises(TlsConfigError, match=r"tls\.cert_file.*nope\.pem"):
        load_or_create_certificate(str(missing), str(key), tmp_path)


def test_missing_configured_key_is_named(tmp_path: Path, generated) -> None:
    cert, _ = generated

    with pytest.raises(TlsConfigError, match=r"tls\.key_file.*nokey\.pem"):
        load_or_create_certificate(str(cert), str(tmp_path / "nokey.pem"), tmp_path)


def test_directory_instead_of_certificate_file_is_refused(tmp_path: Path, generated) -> None:
    _, key = generated

    with pytest.raises(TlsConfigError, match="not a file"):
        load_or_create_certificate(str(tmp_path), str(key), tmp_path)


def test_unreadable_key_is_named(tmp_path: Path, generated) -> None:
    """A key the server's user cannot read is refused with the key's setting named.

    Root reads any file, so as root the check runs in a child process whose capability
    bounding set lacks DAC override (setpriv, from util-linux): root without the power
    to ignore file modes, as in a hardened service unit.
    """
    cert, key = generated
    key.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(TlsConfigError, match=r"tls\.key_file.*not readable"):
            load_or_create_certificate(str(cert), str(key), tmp_path)
        return
    script = (
        "import sys\n"
        "from popbox.server.tls import TlsConfigError, load_or_create_certificate\n"
        "try:\n"
        "    load_or_create_certificate(sys.argv[1], sys.argv[2], None)\n"
        "except TlsConfigError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-dac_override,-dac_read_search",
            sys.executable,
            "-c",
            script,
            str(cert),
            str(key),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert re.search(r"tls\.key_file.*not readable", result.stdout), result


@pytest.mark.parametrize("which", ["cert", "key"])
def test_setting_only_one_of_cert_and_key_is_refused(tmp_path: Path, generated, which) -> None:
    cert, key = generated
    args = (str(cert), "") if which == "cert" else ("", str(key))

    with pytest.raises(TlsConfigError, match="set both"):
        load_or_create_certificate(*args, tmp_path)


def test_key_of_another_certificate_is_refused_naming_both_files(tmp_path: Path) -> None:
    cert, _ = load_or_create_certificate("", "", tmp_path / "a")
    _, other_key = load_or_create_certificate("", "", tmp_path / "b")

    with pytest.raises(TlsConfigError) as excinfo:
        server_context(cert, other_key)

    assert str(cert) in str(excinfo.value)
    assert str(other_key) in str(excinfo.value)


def test_non_pem_certificate_is_refused(tmp_path: Path, generated) -> None:
    _, key = generated
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")

    with pytest.raises(TlsConfigError, match=r"garbage\.pem"):
        server_context(garbage, key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_passphrase_protected_key_is_refused_without_prompting(tmp_path: Path, generated) -> None:
    cert, key = generated
    encrypted = tmp_path / "encrypted.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", key, "-out", encrypted, "-aes256", "-passout", "pass:x"],
        check=True,
        stdin=subprocess.DEVNULL,
    )

    with pytest.raises(TlsConfigError, match=r"encrypted\.pem.*passphrase"):
        server_context(cert, encrypted)


# --- protocol versions -------------------------------------------------------------------


def test_tls_1_2_client_is_accepted(generated) -> None:
    cert, key = generated
    client = trusting_client(cert)
    client.maximum_version = ssl.TLSVersion.TLSv1_2

    assert handshake(client, server_context(cert, key)).version() == "TLSv1.2"


def test_tls_1_3_is_preferred(generated) -> None:
    cert, key = generated

    assert handshake(trusting_client(cert), server_context(cert, key)).version() == "TLSv1.3"


@pytest.mark.parametrize("max_version", ["TLSv1", "TLSv1_1"])
def test_tls_1_1_and_older_are_refused_rfc8996(generated, max_version) -> None:
    """RFC 8996 s1: TLS 1.0 and 1.1 MUST NOT be used; negotiation of them from any
    version of TLS MUST NOT be permitted."""
    cert, key = generated
    client = legacy_client(getattr(ssl.TLSVersion, max_version))

    with pytest.raises(ssl.SSLError, match=r"(?i)protocol|version"):
        handshake(client, server_context(cert, key))


def test_legacy_client_can_do_tls_1_1_with_a_permissive_server(generated) -> None:
    """Control for the test above: the refusal comes from popbox's policy."""
    cert, key = generated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
        permissive.minimum_version = ssl.TLSVersion.TLSv1
    permissive.load_cert_chain(cert, key)

    try:
        version = handshake(legacy_client(ssl.TLSVersion.TLSv1_1), permissive).version()
    except ssl.SSLError:
        pytest.skip("this OpenSSL build cannot speak TLS 1.1 at all")
    assert version == "TLSv1.1"


def test_server_context_disables_compression_and_renegotiation(generated) -> None:
    context = server_context(*generated)

    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


# --- cipher suites -----------------------------------------------------------------------

# Mozilla's "intermediate" TLS 1.2 suites (server-side TLS guidelines v5.7), without the
# DHE ones the server cannot use (no DH parameters are loaded); by certificate key type.
INTERMEDIATE_TLS12 = {
    trustme.KeyType.ECDSA: {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    },
    trustme.KeyType.RSA: {
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    },
}


def every_pre_tls13_suite() -> list[str]:
    """Every TLS 1.2-and-older suite this OpenSSL knows, weak ones included."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    return [c["name"] for c in probe.get_ciphers() if c["protocol"] != "TLSv1.3"]


def accepted_tls12_suites(server: ssl.SSLContext) -> set[str]:
    """Offer the server one suite at a time over TLS 1.2; the ones it completes with."""
    accepted = set()
    for name in every_pre_tls13_suite():
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        client.set_ciphers(f"{name}:@SECLEVEL=0")
        try:
            end = handshake(client, server)
        except ssl.SSLError:
            continue
        cipher = end.cipher()
        assert cipher is not None
        accepted.add(cipher[0])
    return accepted


@pytest.mark.parametrize("key_type", [trustme.KeyType.ECDSA, trustme.KeyType.RSA])
def test_tls12_offers_only_ecdhe_aead_suites(tmp_path: Path, key_type) -> None:
    """RFC 9325 s4.2: implementations SHOULD NOT negotiate cipher suites that use
    CBC; Mozilla "intermediate": ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2."""
    issued = trustme.CA(key_type=key_type).issue_cert("localhost", key_type=key_type)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))

    assert accepted_tls12_suites(server_context(cert, key)) == INTERMEDIATE_TLS12[key_type]


def test_suite_probe_sees_cbc_suites_on_a_default_context(generated) -> None:
    """Control for the test above: the probe does find CBC suites when they are offered."""
    cert, key = generated
    default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    default.load_cert_chain(cert, key)

    assert "ECDHE-ECDSA-AES128-SHA256" in accepted_tls12_suites(default)


# --- reload ------------------------------------------------------------------------------


def test_reload_serves_new_certificate_even_on_a_context_taken_before(tmp_path: Path) -> None:
    cert, key = load_or_create_certificate("", "", tmp_path)
    holder = TlsContextHolder(cert, key)
    captured = holder.context  # what a listener hands to asyncio at start-up
    old = x509.load_pem_x509_certificate(cert.read_bytes())

    # Renew the files in place, as certbot would, then SIGHUP.
    new_cert, new_key = load_or_create_certificate("", "", tmp_path / "renewed")
    shutil.copyfile(new_cert, cert)
    shutil.copyfile(new_key, key)
    holder.reload()

    served = peer_certificate(handshake(trusting_client(cert), captured))
    assert served.serial_number != old.serial_number
    assert served == x509.load_pem_x509_certificate(cert.read_bytes())
    assert holder.context is not captured


def test_failed_reload_keeps_previous_context(generated) -> None:
    cert, key = generated
    holder = TlsContextHolder(cert, key)
    before = holder.context
    key.write_text("broken\n")

    with pytest.raises(TlsConfigError):
        holder.reload()

    assert holder.context is before
    assert holder.cert_path == cert
    assert holder.key_path == key
    handshake(trusting_client(cert), before)

"""``[admin]``: off by default, loopback unless TLS, and a clear one-line refusal."""

from __future__ import annotations

import subprocess

import pytest

from popbox.config import ConfigError, from_mapping
from popbox_servers import popbox_executable


def test_admin_is_off_by_default():
    assert from_mapping({}).admin.listen == ()


@pytest.mark.parametrize(
    "address", ["0.0.0.0:8443", "192.0.2.1:8443", "[::]:8443", "mail.example.com:8443"]
)
def test_a_non_loopback_address_without_tls_is_refused(address):
    with pytest.raises(ConfigError, match=r"admin\.listen: .* set admin\.tls = true"):
        from_mapping({"admin": {"listen": [address]}})


@pytest.mark.parametrize("address", ["127.0.0.1:0", "[::1]:0", "localhost:0"])
def test_loopback_addresses_need_no_tls(address):
    assert from_mapping({"admin": {"listen": [address]}}).admin.listen == (address,)


def test_a_non_loopback_address_with_tls_is_accepted():
    assert from_mapping({"admin": {"listen": ["0.0.0.0:8443"], "tls": True}}).admin.tls


def test_serve_refuses_to_start_with_one_line(tmp_path):
    config = tmp_path / "popbox.toml"
    config.write_text('[admin]\nlisten = ["0.0.0.0:0"]\n', encoding="utf-8")
    done = subprocess.run(
        [popbox_executable(), "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        (
            "popbox: admin.listen: '0.0.0.0:0' is not a loopback address, and the admin API "
            "would carry tokens and passwords in clear text: set admin.tls = true"
        )
    ]

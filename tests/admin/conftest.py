"""A real ``popbox serve`` with two workers and the admin listener, and tokens to call it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from admin_node import Admin, issue_token

from popbox_servers import USERS, ServeProcess, config_mapping, make_tls_files, provision, toml_text

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    base = tmp_path_factory.mktemp("admin")
    tls = make_tls_files(base / "tls")
    data_dir = base / "data"
    provision(data_dir, USERS, {"alice": [b"Subject: first\r\n\r\nhello\r\n"]})
    admin_token, read_token = issue_token(data_dir, "admin"), issue_token(data_dir, "read")
    expired = issue_token(data_dir, "admin", lifetime=1.0)
    mapping = config_mapping(
        data_dir,
        tls,
        {
            "login_type": "plaintext_login",
            "external_connection_settings": ["mail.example.com:995:SSL", "mail.example.com:110"],
        },
        {"server": {"workers": 2}, "admin": {"listen": ["127.0.0.1:0"], "users": ["alice"]}},
    )
    config = base / "popbox.toml"
    config.write_text(toml_text(mapping), encoding="utf-8")
    process = ServeProcess(["serve", "--config", str(config)], cwd=base, stderr_path=base / "err")
    try:
        process.wait_for_listeners({"pop3", "admin"}, timeout=60)
        yield Admin(
            process,
            process.port("admin"),
            process.port("pop3"),
            admin_token,
            read_token,
            expired,
            data_dir,
        )
    finally:
        process.terminate()
        process.close()

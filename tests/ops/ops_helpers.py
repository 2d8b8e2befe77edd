"""Helpers for the operations tests: real ``popbox serve`` processes and their JSON logs.

Every wait is bounded; a node that does not do what a test waits for fails the test
with its own log in the message.
"""

from __future__ import annotations

import asyncio
import json
import os
import poplib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from popbox.store import open_store
from popbox_servers import (
    USERS,
    ServeProcess,
    config_mapping,
    provision,
    provision_store,
    toml_text,
)

if TYPE_CHECKING:
    import signal
    import socket
    from collections.abc import Callable, Mapping

    from popbox_servers import TlsFiles

TIMEOUT = 10.0


@dataclass
class Node:
    """One ``popbox serve --config FILE`` process with JSON logs on stderr."""

    process: ServeProcess
    data_dir: Path
    config_path: Path
    mapping: dict[str, Any]

    @property
    def pid(self) -> int:
        return self.process.process.pid

    def port(self, kind: str = "pop3") -> int:
        return self.process.port(kind)

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.process.stderr().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> list[dict[str, Any]]:
        """Wait until some log event satisfies ``predicate``; returns all that do."""
        deadline = time.monotonic() + timeout
        while True:
            matching = [e for e in self.events() if predicate(e)]
            if matching:
                return matching
            if time.monotonic() > deadline:
                raise AssertionError(f"no such log event in {timeout} s:\n{self.process.stderr()}")
            time.sleep(0.05)

    def rewrite_config(self, **sections: Mapping[str, Any]) -> None:
        """Change sections of the configuration file (for SIGHUP)."""
        for name, values in sections.items():
            self.mapping[name] = {**self.mapping.get(name, {}), **values}
        self.config_path.write_text(toml_text(self.mapping), encoding="utf-8")

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def metrics(self) -> str:
        return http_get(self.port("metrics"), "/metrics")[1]

    def worker_pids(self) -> dict[int, int]:
        """worker index -> pid of its newest process, from the supervisor's log."""
        pids: dict[int, int] = {}
        for event in self.events():
            if event.get("event") == "worker_started":
                pids[event["worker"]] = event["pid"]
        return pids


def start_node(  # noqa: PLR0913 - keyword-only knobs of one test node
    directory: Path,
    tls: TlsFiles,
    *,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    pop3: Mapping[str, Any] | None = None,
    messages: Mapping[str, list[bytes]] | None = None,
    kinds: frozenset[str] = frozenset({"pop3", "pop3s"}),
    provisioned: bool = False,
) -> Node:
    """Provision users (and messages) in the store, start ``popbox serve`` on it.

    The store is SQLite in ``directory``, or the ``[storage]`` of ``sections``; with
    ``provisioned`` the store already has the users (a second node on one database).
    """
    directory.mkdir(parents=True, exist_ok=True)
    storage = (sections or {}).get("storage", {})
    if provisioned:
        pass
    elif storage.get("backend") == "postgresql":
        asyncio.run(_provision_postgres(storage["dsn"], messages or {}))
    else:
        provision(directory, USERS, messages or {})
    server = {"json_logs": True, **((sections or {}).get("server", {}))}
    mapping = config_mapping(directory, tls, pop3, {**(sections or {}), "server": server})
    mapping["lmtp"] = {"listen": [], **((sections or {}).get("lmtp", {}))}
    config_path = directory / "popbox.toml"
    config_path.write_text(toml_text(mapping), encoding="utf-8")
    process = ServeProcess(
        ["serve", "--config", str(config_path)],
        cwd=directory,
        stderr_path=directory / "stderr.log",
    )
    process.wait_for_listeners(set(kinds), timeout=60)
    return Node(process, directory, config_path, mapping)


async def _provision_postgres(dsn: str, messages: Mapping[str, list[bytes]]) -> None:
    store = open_store("postgresql", data_dir=Path(), dsn=dsn)
    await store.open()
    try:
        await provision_store(store, USERS, messages)
    finally:
        await store.close()


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 if absent)."""
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
    )
    for line in metrics.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if _normalise(key) == wanted:
            return float(value)
    return 0.0


def _normalise(key: str) -> str:
    if "{" not in key:
        return key
    name, _, rest = key.partition("{")
    pairs = sorted(p for p in rest.rstrip("}").split(",") if p)
    return name + "{" + ",".join(pairs) + "}"


def login(port: int, user: str = "alice", host: str = "127.0.0.1") -> poplib.POP3:
    client = poplib.POP3(host, port, timeout=TIMEOUT)
    client.user(user)
    client.pass_(USERS[user])
    return client


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def wait_gone(pid: int, timeout: float = TIMEOUT) -> None:
    """Wait until process ``pid`` no longer exists (or is a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # noqa: PTH123 - /proc
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs after {timeout} s")

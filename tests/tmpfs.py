"""A small tmpfs the test mounts, fills, frees and remounts read-only: a real full disk.

Mounting needs root, which CI has (it runs the suite as root).  Where a mount is
impossible the test fails with the reason under CI or as root, and is skipped with
the reason otherwise (a developer's unprivileged run): never silently.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["Tmpfs", "mounted"]

CHUNK = 64 * 1024


class Tmpfs:
    """A mounted tmpfs of a few MiB at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ballast = path / "ballast"

    def fill(self) -> None:
        """Write until the filesystem refuses: afterwards not one block is free."""
        _collect_maps()
        fd = os.open(self._ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (CHUNK, 4096, 1):  # the last partial chunk, then single bytes
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * chunk)
        finally:
            os.close(fd)
        probe = self.path / "probe"
        with pytest.raises(OSError) as refused:
            probe.write_bytes(b"x" * 4096)
        assert refused.value.errno == errno.ENOSPC
        probe.unlink(missing_ok=True)

    def free(self) -> None:
        """Space returns: the ballast goes."""
        self._ballast.unlink()

    def remount(self, option: str) -> None:
        """``ro`` or ``rw``."""
        _collect_maps()
        _mount("-o", f"remount,{option}", str(self.path))


@contextlib.contextmanager
def mounted(path: Path, size: str = "8m") -> Iterator[Tmpfs]:
    """A tmpfs of ``size`` on ``path`` for the block; unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "popbox-test", str(path))
    except OSError as exc:
        reason = f"cannot mount a tmpfs for the full-disk tests (needs root): {exc}"
        if os.environ.get("CI") or os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield Tmpfs(path)
    finally:
        # Lazy: a process the test left behind must not make the unmount fail the run.
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)


def _collect_maps() -> None:
    # A closed store's counters map lives until its last reference is collected: until
    # then it holds an unlinked file's blocks and keeps the mount busy for a remount.
    gc.collect()


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], check=False, capture_output=True, timeout=30)
    if done.returncode != 0:
        raise OSError(f"mount {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")

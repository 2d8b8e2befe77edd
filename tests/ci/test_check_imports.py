"""scripts/check_imports.py on a tiny fake package: which imports make a cycle, which do not.

Issue 16 item 3: CI fails on an import cycle among popbox modules and on the protocol
core importing anything outside the standard library and itself.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

SCRIPT = Path(__file__).parents[2] / "scripts" / "check_imports.py"


@pytest.fixture(scope="module")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def make_package(root: Path, files: dict[str, str]) -> Path:
    """Write ``{"pkg/a.py": source}`` under ``root`` (every folder gets an __init__.py)."""
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(root).parents:
            if folder != Path():
                (root / folder / "__init__.py").touch()
        path.write_text(textwrap.dedent(source))
    return root


def run(check: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = check.main(["--root", str(root), "--package", "pkg", "--pure", "pkg.core"])
    return status, capsys.readouterr().out


def test_clean_package_passes(check, tmp_path, capsys):
    root = make_package(
        tmp_path,
        {
            # A package re-exporting its submodule is not a cycle (the implicit parent edge).
            "pkg/core/__init__.py": "from pkg.core.frames import Frame\n",
            "pkg/core/frames.py": "from __future__ import annotations\nimport dataclasses\n",
            "pkg/core/codes.py": "from pkg.core import frames\n",
            "pkg/server.py": "import asyncio\nfrom pkg.core import frames\nimport structlog\n",
        },
    )
    assert run(check, root, capsys) == (0, "check_imports: no import cycle in pkg\n")


@pytest.mark.parametrize(
    "second",
    [
        "from pkg import a\n",
        "from pkg.a import NAME\n",
        "import pkg.a\n",
        "from . import a\n",
        # Only postponing the import, or only naming types, does not break the cycle.
        "def f():\n    from pkg import a\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import NAME\n",
    ],
    ids=["from-module", "from-name", "import", "relative", "in-function", "type-checking"],
)
def test_every_kind_of_import_closes_a_cycle(check, tmp_path, capsys, second):
    root = make_package(
        tmp_path, {"pkg/a.py": "from pkg.b import OTHER\nNAME = 1\n", "pkg/b.py": second}
    )
    status, out = run(check, root, capsys)
    assert status == 1
    assert "import cycle among pkg.a, pkg.b; one of them: pkg.a -> pkg.b -> pkg.a" in out
    assert f"{root / 'pkg' / 'a.py'}:1: imports pkg.b" in out


def test_cycle_through_a_package_init_is_found(check, tmp_path, capsys):
    root = make_package(
        tmp_path,
        {
            "pkg/store/__init__.py": "from pkg.store.base import Store\n",
            "pkg/store/base.py": "from pkg.config import Settings\n",
            "pkg/config.py": "from pkg.store import DEFAULT\n",
        },
    )
    status, out = run(check, root, capsys)
    assert status == 1
    assert "pkg.config -> pkg.store -> pkg.store.base -> pkg.config" in out


def test_subpackages_importing_each_other_is_a_cycle(check, tmp_path, capsys):
    """No module cycle, but server/ and delivery/ depend on each other."""
    root = make_package(
        tmp_path,
        {
            "pkg/server/accept.py": "from pkg.delivery.bind import bind\n",
            "pkg/server/session.py": "X = 1\n",
            "pkg/delivery/bind.py": "def bind(): ...\n",
            "pkg/delivery/lmtp.py": "from pkg.server.session import X\n",
        },
    )
    status, out = run(check, root, capsys)
    assert status == 1
    assert (
        "package cycle among pkg.delivery, pkg.server; "
        "one of them: pkg.delivery -> pkg.server -> pkg.delivery" in out
    )
    assert f"{root / 'pkg' / 'delivery' / 'lmtp.py'}:1: imports pkg.server.session" in out
    assert "import cycle among" not in out


def test_pure_package_may_import_only_stdlib_and_itself(check, tmp_path, capsys):
    root = make_package(
        tmp_path,
        {
            "pkg/core/frames.py": """\
                import asyncio.events
                from typing import TYPE_CHECKING
                from pkg.core import codes
                if TYPE_CHECKING:
                    from pkg.store import Info
                def parse():
                    import attrs
                """,
            "pkg/core/codes.py": "",
            "pkg/store.py": "Info = int\n",
        },
    )
    status, out = run(check, root, capsys)
    assert status == 1
    frames = root / "pkg" / "core" / "frames.py"
    assert out.splitlines() == [
        f"{frames}:5: pkg.core must import only the standard library and itself, not pkg.store",
        f"{frames}:7: pkg.core must import only the standard library and itself, not attrs",
        "check_imports: 2 problem(s)",
    ]

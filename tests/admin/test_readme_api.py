"""The README's API reference lists exactly the operations of the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

from popbox.admin.openapi import operations

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(GET|POST|PUT|DELETE)` \| `([^`]+)` \| (read|admin) \| (.+) \|$")


def test_the_readme_api_table_matches_the_openapi_document():
    rows = {
        (m[1].lower(), m[2]): (m[3], m[4])
        for line in README.read_text(encoding="utf-8").splitlines()
        if (m := ROW.match(line))
    }
    documented = {
        (method, path): (op["x-scope"], op["summary"])
        for path, ops in operations().items()
        for method, op in ops.items()
    }
    assert rows == documented

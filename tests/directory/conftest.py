"""The directory tests reuse the authentication tests' in-process server."""

from auth.conftest import auth_server, ca  # noqa: F401 - fixtures, found by pytest by name

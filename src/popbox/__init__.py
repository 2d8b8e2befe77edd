"""popbox: a POP3 mail server with Exchange's documented POP3 semantics."""

__version__ = "0.1.0"

__all__ = ["__version__"]

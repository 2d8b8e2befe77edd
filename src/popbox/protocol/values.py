"""``Value``: the base of the small immutable objects the protocol core builds per command.

Commands, replies, the ``Retrieve`` event, protocol-log records and the ``Awaiting``
phase are built on every command cycle, so they are plain classes with an explicit
``__init__`` rather than frozen dataclasses; this base gives them what the dataclass did.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["Value"]


class Value:
    """What ``@dataclass(frozen=True)`` gives, for the objects built on every command.

    A dataclass's generated ``__init__`` runs interpreted even in the compiled build, and
    a frozen one sets each field through ``object.__setattr__``; an explicit ``__init__``
    costs a fraction of that.  A subclass names its fields in ``__match_args__`` (in
    order: equality, hash, repr and positional ``case`` patterns use them) and in
    ``__slots__``, declares them ``Final`` and sets them in its ``__init__``.  ``Final``
    keeps them read-only: mypy checks it, and the compiled build enforces it at run time
    (no setter).  The pure-Python build does not: a ``__setattr__`` that refused would
    bring back the cost of ``object.__setattr__`` in every ``__init__``.
    """

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Value) and type(other) is type(self):
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = zip(self.__match_args__, self._values(), strict=True)
        return f"{type(self).__qualname__}({', '.join(f'{n}={v!r}' for n, v in fields)})"

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

"""The base of pgdl's plain data classes: fields, equality, repr, nothing else.

Each class lists its fields in __slots__ and sets them in an __init__ written
out in full.  @dataclass would write those methods for us, but it generates
and compiles them again in every new backend: with its own import that was
two thirds of the cost of importing pgdl (about 23 of 34 ms in PL/Python),
paid by the first call of every session.
"""

from __future__ import annotations

from enum import Enum


class Record:
    """Fields are the class's __slots__, in order; a slot whose name starts
    with "_" is private state (a cache, say), not a field.  Records of one
    class are equal when their fields are.  Records can change, so they are
    not hashable."""

    __slots__ = ()
    __hash__ = None
    _fields: tuple[str, ...] = ()

    def __init_subclass__(cls):
        cls._fields = tuple(name for name in cls.__slots__ if not name.startswith("_"))

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def replace(self, **changes):
        """A copy with some fields changed (dataclasses.replace): made by
        __init__, so private state starts afresh."""
        values = {name: getattr(self, name) for name in self._fields}
        values.update(changes)
        return type(self)(**values)


class Value(Record):
    """A record that is not changed once made, so it can be a dict key."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._values())


class Name(str, Enum):
    """An enum whose members are names that rows show as they are (str() is the value)."""

    def __str__(self) -> str:
        return self.value

"""Value classes for the modules a cached `engram recall` imports, without `dataclasses`.

Importing dataclasses costs a process about 20 ms here (it imports inspect, which imports
ast, dis, tokenize and more): a fifth of what a cached recall may take in all. The
settings, the connection, the cache policy and the recall options are therefore plain
classes, as httpx's `Limits` is: each lists its fields in `__slots__` and writes its own
`__init__` (which mypy checks), and `Value` gives it what a dataclass would: equality
and hashing over the fields, a repr, `replace()`, and immutability (a field is set once,
in `__init__`) unless the class says `frozen=False`. The rest of the package may use
dataclasses freely.
"""

from __future__ import annotations

# typing costs a cached recall several ms at import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from typing_extensions import Self


class Value:
    """A value made of the fields in its classes' `__slots__` (base classes first).

    `_uncompared` names fields that take no part in ==, hashing or the repr (like a
    dataclass's `field(compare=False, repr=False)`).
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...]] = ()
    _uncompared: ClassVar[tuple[str, ...]] = ()
    _frozen: ClassVar[bool] = True

    def __init_subclass__(cls, frozen: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._frozen = frozen
        cls._fields = tuple(name for klass in reversed(cls.__mro__)
                            for name in klass.__dict__.get("__slots__", ()))
        cls._compared = tuple(f for f in cls._fields if f not in cls._uncompared)
        if not frozen:
            cls.__hash__ = None  # type: ignore[assignment]  # mutable: unhashable, like a dataclass

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen and hasattr(self, name):
            raise AttributeError(f"cannot assign to field {name!r} of {type(self).__name__}: "
                                 "it is immutable (use replace())")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self._frozen:
            raise AttributeError(f"cannot delete field {name!r} of {type(self).__name__}")
        object.__delattr__(self, name)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._compared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._compared)
        return f"{type(self).__qualname__}({fields})"

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` (as dataclasses.replace: every field is an __init__
        argument of the same name)."""
        return type(self)(**{**{name: getattr(self, name) for name in self._fields},
                             **changes})

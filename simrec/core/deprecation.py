"""Former names that keep working for a while, each with a ``FutureWarning`` that says the new one."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keyword(old: str, new: str) -> Callable[[F], F]:
    """Let callers still pass the keyword argument ``new`` by its former name ``old``.

    Example:
        >>> @renamed_keyword("directory", "index_dir")
        ... def load(index_dir):
        ...     return index_dir
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     load(directory="idx"), str(caught[0].message)
        ('idx', 'load(directory=...) is now load(index_dir=...); directory will be removed')
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{function.__qualname__}() got both {old}= and {new}=; pass {new}= alone")
                name = function.__qualname__.removesuffix(".__init__")
                warnings.warn(
                    f"{name}({old}=...) is now {name}({new}=...); {old} will be removed", FutureWarning, stacklevel=2
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def renamed_attribute(old: str, new: str) -> property:
    """A read-only property ``old`` that returns the attribute ``new``, with a ``FutureWarning``.

    Example:
        >>> class Point:
        ...     x = 1
        ...     first = renamed_attribute("first", "x")
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     Point().first, str(caught[0].message)
        (1, 'Point.first is now Point.x; first will be removed')
    """

    def read(self: Any) -> Any:
        name = type(self).__name__
        warnings.warn(f"{name}.{old} is now {name}.{new}; {old} will be removed", FutureWarning, stacklevel=2)
        return getattr(self, new)

    return property(read, doc=f"Former name of ``{new}``.")

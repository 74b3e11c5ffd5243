"""Old spellings kept working for one release, each with a ``DeprecationWarning``.

psal 0.x renamed a few arguments so that one name means one thing everywhere (see
docs/attention.md, "Vocabulary"). The helpers here translate the old spellings at the
entry points; they go away in the next release.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: Removal target quoted in the warnings.
REMOVAL = "will be removed in the next release"


def warn_deprecated(message: str, stacklevel: int = 3) -> None:
    """Emit a DeprecationWarning with the common removal notice."""
    warnings.warn(f"{message} ({REMOVAL})", DeprecationWarning, stacklevel=stacklevel)


def rename_kwargs(
    func_name: str, kwargs: dict[str, Any], renames: Mapping[str, str], stacklevel: int = 4
) -> dict[str, Any]:
    """Move deprecated keyword names in ``kwargs`` to their new names, warning once each.

    Raises:
        TypeError: both the old and the new name were given.
    """
    for old, new in renames.items():
        if old in kwargs:
            if new in kwargs:
                raise TypeError(f"{func_name}() got both {old!r} (deprecated) and {new!r}")
            warn_deprecated(f"{func_name}({old}=...) is deprecated; use {new}=", stacklevel)
            kwargs[new] = kwargs.pop(old)
    return kwargs


def keyword_only(
    n_positional: int, names: tuple[str, ...], renames: Mapping[str, str] | None = None
) -> Callable[[F], F]:
    """Decorator: accept the old positional options and old keyword names, with a warning.

    The decorated function takes ``n_positional`` positional arguments and keyword-only
    options. A call with more positional arguments maps the extra ones, in order, onto
    ``names`` (the old positional order); a call with an old keyword name (``renames``:
    old -> new) passes it under the new name. Both warn with a DeprecationWarning.
    """

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if renames:
                rename_kwargs(fn.__qualname__, kwargs, renames)
            if len(args) > n_positional:
                extra = args[n_positional:]
                if len(extra) > len(names):
                    raise TypeError(
                        f"{fn.__qualname__}() takes {n_positional + len(names)} positional "
                        f"arguments at most, got {len(args)}"
                    )
                spelled = ", ".join(f"{n}=" for n in names[: len(extra)])
                warn_deprecated(
                    f"passing {spelled.rstrip(', ')} to {fn.__qualname__}() by position is "
                    "deprecated; pass them by keyword",
                    stacklevel=3,
                )
                for name, value in zip(names, extra):
                    if name in kwargs:
                        raise TypeError(f"{fn.__qualname__}() got multiple values for {name!r}")
                    kwargs[name] = value
                args = args[:n_positional]
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator

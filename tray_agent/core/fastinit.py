"""Cheap constructors for the frozen, slotted dataclasses built on the hot path (issue 16).

A frozen dataclass's ``__init__`` stores each field through ``object.__setattr__`` (frozen
classes forbid plain assignment): about 0.1 us per field, 1.7 us for a 13-field
:class:`~tray_agent.core.events.MessageReceived`, once or more per frame. :func:`fast_constructor`
returns a function with the same signature that fills a layout-identical, unfrozen twin with
plain slot stores and then gives the object its real class: the result is an ordinary instance
of the frozen class (same type, fields, equality, hash, repr, immutability), built at a quarter
of the cost.

Only for classes whose ``__init__`` just stores its arguments: no ``__post_init__``, no
``default_factory``, no ``InitVar``, no keyword-only fields; :func:`fast_constructor` refuses
others (TypeError), so a later change to such a class fails loudly at import, not silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["fast_constructor"]

_T = TypeVar("_T")


def fast_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A function building ``cls`` instances exactly as ``cls(...)`` does, faster.

    Args:
        cls: a ``@dataclass(frozen=True, slots=True)`` class whose ``__init__`` only stores its
            arguments (and the defaults of its ``init=False`` fields).

    Raises:
        TypeError: ``cls`` is not such a class.
    """
    if not (dataclasses.is_dataclass(cls) and "__slots__" in cls.__dict__):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    params: list[str] = []
    stores: list[str] = []
    env: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        if f.default_factory is not dataclasses.MISSING or f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: default_factory / kw_only not supported")
        if f.init:
            if f.default is dataclasses.MISSING:
                params.append(f.name)
            else:
                env[f"_d{i}"] = f.default
                params.append(f"{f.name}=_d{i}")
            stores.append(f"    o.{f.name} = {f.name}")
        else:
            if f.default is dataclasses.MISSING:
                raise TypeError(f"{cls.__name__}.{f.name}: init=False without a default")
            env[f"_d{i}"] = f.default
            stores.append(f"    o.{f.name} = _d{i}")
    # Same base and the same __slots__: CPython lets an instance switch between the two classes
    # (``__class__`` assignment checks that the layouts are identical). Plain setattr: no freeze.
    base: type = cls.__base__ or object
    twin = type(
        f"_{cls.__name__}Builder",
        (base,),
        {
            "__slots__": cls.__dict__["__slots__"],
            "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__,
        },
    )
    probe: Any = object.__new__(twin)
    probe.__class__ = cls  # TypeError here (at import) if the layouts differ after all
    env.update(_new=object.__new__, _twin=twin, _cls=cls)
    source = "\n".join(
        [
            f"def build({', '.join(params)}):",
            "    o = _new(_twin)",
            *stores,
            "    o.__class__ = _cls",
            "    return o",
        ]
    )
    exec(source, env)  # from the dataclass's own field names, as dataclasses itself does
    build: Callable[..., _T] = env["build"]
    build.__qualname__ = build.__name__ = f"build_{cls.__name__}"
    build.__doc__ = f"``{cls.__name__}(...)``, built without the frozen ``__setattr__`` calls."
    return build

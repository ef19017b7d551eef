"""Typed settings of each stage: one frozen dataclass, built from keywords or a dict.

Every stage of the pipeline keeps its settings in one dataclass
(:class:`~gala_deeppotential.df.FlowOptions`,
:class:`~gala_deeppotential.training_options.TrainingOptions`,
:class:`~gala_deeppotential.potential.PotentialOptions`,
:class:`~gala_deeppotential.virial.VirialOptions`). The stage's function,
its checkpoint and the command line all read that one object, so a setting
is declared once, with its default and its check.
"""

from __future__ import annotations

__all__ = [
    "add_option_arguments",
    "coerce_fields",
    "options_dict",
    "parsed_options",
    "resolve_options",
]

import argparse
import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def resolve_options(
    cls: type[T], options: T | Mapping[str, Any] | None = None, **overrides: Any
) -> T:
    """An instance of the options dataclass ``cls``, from an instance or a mapping.

    Parameters
    ----------
    cls : type
        The options dataclass.
    options : instance of ``cls``, mapping or None
        The settings; a mapping holds field names (the others keep their
        defaults). An instance of a subclass of ``cls`` (e.g. the whole DF
        stage's options where only the flows' architecture is wanted) gives
        its fields of ``cls``.
    **overrides
        Fields that replace those of ``options``.

    Returns
    -------
    options : instance of ``cls``

    Raises
    ------
    TypeError
        For a name that is not a field of ``cls``; the message lists them.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    if options is None:
        values: dict[str, Any] = {}
    elif isinstance(options, cls):
        values = {name: getattr(options, name) for name in names}
    elif dataclasses.is_dataclass(options) and not isinstance(options, type):
        values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
        values = {k: v for k, v in values.items() if k in names}
    elif isinstance(options, Mapping):
        values = dict(options)
    else:
        raise TypeError(
            f"options must be a {cls.__name__} or a dict of its fields, "
            f"got {type(options).__name__}"
        )
    values.update(overrides)
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise TypeError(
            f"{cls.__name__} has no setting {', '.join(map(repr, unknown))}; "
            f"its settings are {', '.join(names)}"
        )
    return cls(**values)


# Conversions of the annotations the options dataclasses use.
_CONVERSIONS = {
    "int": int,
    "int | None": lambda value: None if value is None else int(value),
    "float": float,
    "float | None": lambda value: None if value is None else float(value),
    "bool": bool,
    "bool | None": lambda value: None if value is None else bool(value),
    "str": str,
    "tuple[int, ...]": lambda value: tuple(int(i) for i in value),
}


def coerce_fields(options: Any) -> None:
    """Convert each field of a frozen options dataclass to its annotated type.

    So that ``epochs=8.0`` or a NumPy integer from a script is stored, and
    recorded in checkpoints, as the plain ``int`` 8. Fields of other types
    are left as they are.
    """
    for f in dataclasses.fields(options):
        convert = _CONVERSIONS.get(str(f.type))
        if convert is not None:
            object.__setattr__(options, f.name, convert(getattr(options, f.name)))


def options_dict(options: Any) -> dict[str, Any]:
    """The fields of an options dataclass as a JSON-able dict (tuples as lists)."""
    return {
        f.name: _plain(getattr(options, f.name)) for f in dataclasses.fields(options)
    }


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


# Command-line types of the annotations the options dataclasses use.
_ARGUMENT_TYPES: dict[str, dict[str, Any]] = {
    "int": {"type": int},
    "int | None": {"type": int},
    "float": {"type": float},
    "float | None": {"type": float},
    "str": {"type": str},
    "bool": {"action": argparse.BooleanOptionalAction},
    "bool | None": {"action": argparse.BooleanOptionalAction},
    "tuple[int, ...]": {"type": int, "nargs": "*"},
}


def add_option_arguments(parser: Any, cls: type, *, prefix: str = "") -> None:
    """Add a command-line option ``--PREFIX-FIELD`` for every field of ``cls``.

    Each option defaults to None, which keeps the dataclass's own default, so
    :func:`parsed_options` returns only what the command line set.
    """
    for f in dataclasses.fields(cls):
        kind = _ARGUMENT_TYPES.get(str(f.type))
        if kind is None:
            raise TypeError(f"no command-line type for {cls.__name__}.{f.name}")
        flag = "--" + (prefix + f.name).replace("_", "-")
        parser.add_argument(
            flag,
            dest=prefix + f.name,
            default=None,
            help=f"{cls.__name__}.{f.name} (default: {_plain(f.default)})",
            **kind,
        )


def parsed_options(args: Any, cls: type, *, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` that the command line set, by field name."""
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, prefix + f.name)
        if value is not None:
            out[f.name] = value
    return out

"""`open_dataset("reader:path?option=value")`: the one entry point to every reader, its options
checked and typed from the reader's signature."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Literal
from urllib.parse import parse_qsl

from garasam.data.readers.base import Reader
from garasam.data.readers.cityscapes import CityscapesReader
from garasam.data.readers.coco import CocoReader
from garasam.data.readers.folder import FolderReader
from garasam.data.readers.robustseg import RobustSegReader
from garasam.errors import ConfigError, DataError

READERS: dict[str, type[Reader]] = {
    reader.name: reader for reader in (RobustSegReader, CocoReader, FolderReader, CityscapesReader)
}


def open_dataset(spec: str, **options: Any) -> Reader:
    """Open `<reader>:<path>[?option=value&...]` (the `--data` syntax of every command).

    Options in the spec (e.g. `folder:/data/DIS?image_dir=im&mask_dir=gt`, `robustseg:/d?degradation=fog`)
    override keyword `options`; values are converted to the option's type.
    """
    reader_name, sep, rest = spec.partition(":")
    if not sep or reader_name not in READERS:
        raise DataError(
            f"unknown dataset {spec!r}: expected <reader>:<path> with reader one of {', '.join(READERS)}"
        )
    path, _, query = rest.partition("?")
    if not path:
        raise DataError(f"dataset {spec!r}: missing path after '{reader_name}:'")
    reader_cls = READERS[reader_name]
    hints = _option_types(reader_cls)
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in hints:
            raise ConfigError(
                f"dataset {spec!r}: unknown option {key!r} for {reader_name} (options: {', '.join(hints)})"
            )
        options[key] = _coerce(value, hints[key], f"dataset {spec!r}: option {key}")
    unknown = set(options) - set(hints)
    if unknown:
        raise ConfigError(
            f"{reader_name} reader: unknown option(s) {sorted(unknown)} (options: {', '.join(hints)})"
        )
    return reader_cls(path, **options)


def _option_types(reader_cls: type[Reader]) -> dict[str, Any]:
    # the annotations name types of the reader's own module (from __future__ import annotations)
    hints = typing.get_type_hints(reader_cls.__init__)
    return {
        name: hints[name]
        for name in inspect.signature(reader_cls.__init__).parameters
        if name not in ("self", "root")
    }


def _coerce(value: str, hint: Any, where: str) -> Any:
    """Convert a query-string value to the option's annotated type."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value.lower() in ("", "none", "null") and type(None) in args:
            return None
        hint = next(arg for arg in args if arg is not type(None))
        args, origin = typing.get_args(hint), typing.get_origin(hint)
    try:
        if hint is bool:
            lowered = value.lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(f"expected true/false, got {value!r}")
            return lowered in ("1", "true", "yes")
        if hint is int:
            return int(value)
        if origin is tuple:
            return tuple(int(v) for v in value.split(",") if v)
        if origin is Literal and value not in args:
            raise ValueError(f"expected one of {args}, got {value!r}")
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    return value

"""Declared connection parameters -> typed values, or errors shaped like FastAPI's.

The int rules are the ones FastAPI's validation applies to text input: surrounding Unicode
white space is ignored, an optional sign, ASCII digits with single underscores between them,
and an optional fraction made only of zeros (`3.0` is 3, `1.5` is not an integer).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from starlette.requests import HTTPConnection

Source = Literal["path", "query", "cookie"]
Sources = Mapping[Source, Mapping[str, str]]


class Error(TypedDict):
    type: str
    loc: list[str]
    msg: str
    input: str | None


class InvalidValue(ValueError):
    def __init__(self, type: str, msg: str) -> None:
        super().__init__(msg)
        self.type = type
        self.msg = msg


# Rust's `char::is_whitespace`, which is what FastAPI's validator strips (not Python's set).
WHITESPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
MAX_INT_DIGITS = 4300
_INTEGER = re.compile(r"([+-]?)([0-9](?:_?[0-9])*)(?:\.0+)?")


def parse_int(text: str) -> int:
    match = _INTEGER.fullmatch(text.strip(WHITESPACE))
    if match is None:
        raise InvalidValue("int_parsing", "Input should be a valid integer, unable to parse string as an integer")
    sign, digits = match.groups()
    significant = digits.replace("_", "").lstrip("0")
    if len(significant) > MAX_INT_DIGITS:
        raise InvalidValue("int_parsing_size", "Unable to parse input string as an integer, exceeded maximum size")
    value = int(significant or "0")
    return -value if sign == "-" else value


def parse_str(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Param:
    source: Source
    name: str
    parse: Callable[[str], Any] = parse_str
    required: bool = False
    default: Any = None


def path(name: str, parse: Callable[[str], Any] = parse_str) -> Param:
    return Param("path", name, parse, required=True)


def query(name: str, parse: Callable[[str], Any] = parse_str, default: Any = None) -> Param:
    return Param("query", name, parse, default=default)


def cookie(name: str, parse: Callable[[str], Any] = parse_str, default: Any = None) -> Param:
    return Param("cookie", name, parse, default=default)


def resolve(params: Sequence[Param], sources: Sources) -> tuple[dict[str, Any], list[Error]]:
    """Every declared parameter's typed value (or its default), and every problem found."""
    values: dict[str, Any] = {}
    errors: list[Error] = []
    for param in params:
        values[param.name] = param.default
        raw = sources[param.source].get(param.name)
        if raw is None:
            if param.required:
                errors.append(missing(param.source, param.name))
            continue
        try:
            values[param.name] = param.parse(raw)
        except InvalidValue as exc:
            errors.append(error(exc.type, [param.source, param.name], exc.msg, raw))
    return values, errors


def error(kind: str, loc: list[str], msg: str, value: str | None = None) -> Error:
    """One problem, shaped as FastAPI's: its type, where it is, what is wrong, what was given."""
    return {"type": kind, "loc": loc, "msg": msg, "input": value}


def missing(source: str, name: str, msg: str = "Field required") -> Error:
    return error("missing", [source, name], msg)


def sources_of(conn: HTTPConnection) -> Sources:
    """A connection's parameters; a repeated query parameter keeps its last value."""
    return {"path": conn.path_params, "query": conn.query_params, "cookie": conn.cookies}

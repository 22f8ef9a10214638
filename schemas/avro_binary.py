"""Avro binary encoding of the records the rules write on every event (alerts, coverage changes),
compiled once per schema into one Python function.

fastavro's ``schemaless_writer`` takes 30-40 us for one AlertRecord (most of it choosing a branch for
each nullable field), and a model dump before it another 5 us; the live worker writes about one alert
and one coverage record per event, so that cost more than the rules. These records use a small part
of Avro -- records, strings, ints and longs, booleans, enums, arrays, maps and unions of null with
one other type -- and ``compile_encoder`` turns such a schema into the source of a function with one
statement per field, reading the model's attributes directly (no dump), then compiles it.

It returns None for a schema using anything else, and the caller keeps fastavro. The bytes are
fastavro's, byte for byte: tests/test_avro_binary.py compares both on every record of a generated
season and on edge values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class _Unsupported(Exception):
    """A schema construct this module does not encode (fastavro does)."""


def write_long(value: int, out: bytearray) -> None:
    """Zig-zag variable-length encoding of an Avro int or long."""
    value = (value << 1) ^ (value >> 63)
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _long_bytes(value: int) -> bytes:
    out = bytearray()
    write_long(value, out)
    return bytes(out)


_SHORT = [bytes([length << 1]) for length in range(64)]  # the encodings of 0..63


def compile_encoder(schema: Any) -> Callable[[Any], bytes] | None:
    """A function writing a record of the parsed ``schema`` given as a model (attributes) or None.

    The model's values are what its ``model_dump()`` gives: enums as their values, instants and dates
    as ints, nested records as models, arrays as tuples or lists."""
    source = _Source()
    try:
        source.value(schema, "record", 1)
    except _Unsupported:
        return None
    text = "def encode(record):\n    out = bytearray()\n" + "\n".join(source.lines) + "\n    return bytes(out)\n"
    namespace: dict[str, Any] = {"write_long": write_long, "long_bytes": _long_bytes, "SHORT": _SHORT}
    namespace.update(source.constants)
    exec(compile(text, f"<avro encoder {schema.get('name', '?')}>", "exec"), namespace)
    encode: Callable[[Any], bytes] = namespace["encode"]
    return encode


class _Source:
    """Statements that write one value, appended to ``lines``; names of helper values in ``constants``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._names = 0

    def _name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def _emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def value(self, schema: Any, expression: str, depth: int) -> None:
        if isinstance(schema, list):
            self._nullable(schema, expression, depth)
            return
        kind = schema if isinstance(schema, str) else schema["type"]
        if kind == "string":
            data = self._name("data")
            self._emit(depth, f"{data} = {expression}.encode()")
            # Most strings are shorter than 64 bytes: their length is one byte, written without a call.
            self._emit(depth, f"out += SHORT[len({data})] if len({data}) < 64 else long_bytes(len({data}))")
            self._emit(depth, f"out += {data}")
        elif kind in ("int", "long"):  # a logical type (instant, date) changes nothing: the ints are written
            self._emit(depth, f"write_long({expression}, out)")
        elif kind == "boolean":
            self._emit(depth, f"out.append(1 if {expression} else 0)")
        elif kind == "enum":
            symbols = schema["symbols"]
            if len(symbols) > 64:  # one zig-zag byte holds positions 0..63
                raise _Unsupported("an enum of more than 64 symbols")
            index = self._name("symbols")
            self.constants[index] = {symbol: bytes([position << 1]) for position, symbol in enumerate(symbols)}
            self._emit(depth, f"out += {index}[{expression}]")
        elif kind == "record":
            record = self._name("record")
            self._emit(depth, f"{record} = {expression}")
            for field in schema["fields"]:
                self.value(field["type"], f"{record}.{_identifier(field['name'])}", depth)
        elif kind == "array":
            items, item = self._name("items"), self._name("item")
            self._emit(depth, f"{items} = {expression}")
            self._emit(depth, f"if {items}:")
            self._emit(depth + 1, f"write_long(len({items}), out)")
            self._emit(depth + 1, f"for {item} in {items}:")
            self.value(schema["items"], item, depth + 2)
            self._emit(depth, "out.append(0)")
        elif kind == "map":
            entries, key, entry = self._name("entries"), self._name("key"), self._name("value")
            self._emit(depth, f"{entries} = {expression}")
            self._emit(depth, f"if {entries}:")
            self._emit(depth + 1, f"write_long(len({entries}), out)")
            self._emit(depth + 1, f"for {key}, {entry} in {entries}.items():")
            self.value("string", key, depth + 2)
            self.value(schema["values"], entry, depth + 2)
            self._emit(depth, "out.append(0)")
        else:
            raise _Unsupported(str(kind))

    def _nullable(self, branches: list[Any], expression: str, depth: int) -> None:
        """Null or one other type (the only unions these records use)."""
        if len(branches) != 2 or "null" not in branches:
            raise _Unsupported("a union other than null and one type")
        null_first = branches[0] == "null"
        other = branches[1] if null_first else branches[0]
        value = self._name("value")
        self._emit(depth, f"{value} = {expression}")
        self._emit(depth, f"if {value} is None:")
        self._emit(depth + 1, f"out.append({0 if null_first else 2})")  # zig-zag of the branch's position
        self._emit(depth, "else:")
        self._emit(depth + 1, f"out.append({2 if null_first else 0})")
        self.value(other, value, depth + 1)


def _identifier(name: str) -> str:
    if not name.isidentifier():
        raise _Unsupported(f"field name {name!r}")
    return name

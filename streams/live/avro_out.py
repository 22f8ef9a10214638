"""The worker's output records (alert transitions, coverage changes) as topic messages, without a model
dump and without fastavro's per-call set-up.

``encode_message`` (``schemas/codec.py``) dumps the pydantic model to a dict and hands it to
``fastavro.schemaless_writer``: about 24 µs a record, of which 6 the dump and 16 the writer, mostly
its set-up for one record. The worker writes about two such records per event, so that was a fifth of
its time. Here each schema is compiled once into a function that reads the model's attributes and
writes the Avro binary directly: the same bytes (single-object encoding with the current schema's
fingerprint; ``tests/test_avro_out.py`` compares them with ``encode_message`` field by field and on
a whole season), a few microseconds a record.

Only what the output schemas use is compiled: records, enums, arrays, ``["null", X]`` unions,
strings, booleans, ints and longs (logical types are the same ints on the wire). A schema with
anything else is refused when compiled, so a schema change that needs more fails at import, not on
the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import load_schema
from schemas.codec import SINGLE_OBJECT_MARKER, fingerprint
from schemas.models import AlertRecord, CoverageRecord, Record


def _long(value: int) -> bytes:
    """Avro's zig-zag varint of an int or long."""
    n = (value << 1) ^ (value >> 63)
    if n < 0x80:
        return _SMALL[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = []
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes([n]) for n in range(0x80)]


class _Source:
    """The body of a generated encoder: statements appending to ``out`` (a bytearray)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._names = 0

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def add(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


def _emit(schema: Any, value: str, source: _Source, depth: int) -> None:
    """Statements writing the Avro binary of the expression ``value`` (a plain name) of ``schema``."""
    kind = schema if isinstance(schema, str) else None
    if isinstance(schema, dict) and schema["type"] in ("string", "long", "int", "boolean"):
        kind = schema["type"]  # a logical type over a primitive: the same bytes
    if kind == "string":
        data = source.name("b")
        source.add(depth, f"{data} = {value}.encode()")
        source.add(depth, f"out += long_({data}.__len__())")
        source.add(depth, f"out += {data}")
    elif kind in ("long", "int"):
        source.add(depth, f"out += long_({value})")
    elif kind == "boolean":
        source.add(depth, f"out += b'\\x01' if {value} else b'\\x00'")
    elif kind is not None:
        raise TypeError(f"no compiled writer for Avro type {schema!r}")
    elif isinstance(schema, list):
        if len(schema) != 2 or schema[0] != "null":
            raise TypeError(f"no compiled writer for the union {schema!r}")
        source.add(depth, f"if {value} is None:")
        source.add(depth + 1, "out += b'\\x00'")
        source.add(depth, "else:")
        source.add(depth + 1, "out += b'\\x02'")  # branch 1
        _emit(schema[1], value, source, depth + 1)
    elif schema["type"] == "enum":
        table = source.name("enum")
        source.constants[table] = {symbol: _long(i) for i, symbol in enumerate(schema["symbols"])}
        source.add(depth, f"out += {table}[{value}]")
    elif schema["type"] == "array":
        item = source.name("item")
        source.add(depth, f"if {value}:")
        source.add(depth + 1, f"out += long_(len({value}))")
        source.add(depth + 1, f"for {item} in {value}:")
        _emit(schema["items"], item, source, depth + 2)
        source.add(depth, "out += b'\\x00'")
    elif schema["type"] == "record":
        for field in schema["fields"]:
            name = source.name("v")
            source.add(depth, f"{name} = {value}.{field['name']}")
            _emit(field["type"], name, source, depth)
    else:
        raise TypeError(f"no compiled writer for Avro type {schema['type']!r}")


def message_writer(name: str) -> Callable[[Record], bytes]:
    """A function from a model of record ``name`` to its topic message value, as ``encode_message``."""
    return compile_writer(load_schema(name))


def compile_writer(schema: dict[str, Any]) -> Callable[[Any], bytes]:
    """A function from an object with a record schema's fields as attributes to its single-object encoding."""
    source = _Source()
    source.add(1, "out = bytearray(HEAD)")
    _emit(schema, "record", source, 1)
    source.add(1, "return bytes(out)")
    namespace: dict[str, Any] = {
        **source.constants,
        "HEAD": SINGLE_OBJECT_MARKER + fingerprint(schema),
        "long_": _long,
    }
    exec("def encode(record):\n" + "\n".join(source.lines), namespace)  # generated from our own schema
    encode: Callable[[Any], bytes] = namespace["encode"]
    return encode


encode_alert: Callable[[AlertRecord], bytes] = message_writer("AlertRecord")
encode_coverage: Callable[[CoverageRecord], bytes] = message_writer("CoverageRecord")

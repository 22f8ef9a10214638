"""Encoding contract models as Avro binary and as canonical JSON lines.

Canonical JSON line: UTF-8, compact, fields in schema order, null fields left out, instants as
ISO 8601 in +08:00 with milliseconds, dates as ``YYYY-MM-DD``. Events also carry ``type`` (the Avro
record name) right after ``event_id``. ``event_id`` is the first 32 hex characters of the SHA-256 of
the event's canonical JSON line without its ``event_id`` member, so anyone can recompute it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from types import UnionType
from typing import IO, Annotated, Any, TypeVar, Union, cast, get_args, get_origin

import fastavro
import orjson
from pydantic import PlainSerializer

from schemas import NAMESPACE, RECORD_NAMES, historical_schemas, load_schema
from schemas.avro_binary import compile_encoder
from schemas.models import EVENT_TYPES, MODELS_BY_NAME, Event, Record

R = TypeVar("R", bound=Record)
E = TypeVar("E", bound=Event)
_PLACEHOLDER_ID = "0" * 32
LOG_EVENT_NAMES = tuple(EVENT_TYPES)


def _without_logical_types(node: Any) -> Any:
    """A copy of a schema with logicalType annotations dropped, so the reader yields plain ints."""
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


@cache
def parsed_schema(name: str) -> Any:
    """The parsed Avro schema of one record, as written in ``schemas/``."""
    return fastavro.parse_schema(load_schema(name))


# Logical types change only how values are shown, not the bytes: decoding with them stripped
# yields the ints the models hold, without building datetime objects.
@cache
def _reader_schema(name: str) -> Any:
    return fastavro.parse_schema(_without_logical_types(load_schema(name)))


@cache
def log_schema() -> Any:
    """Value schema of the unified log: a union of the four source events and the clock tick."""
    return fastavro.parse_schema([load_schema(name) for name in LOG_EVENT_NAMES])


@cache
def _log_reader_schema() -> Any:
    return fastavro.parse_schema([_without_logical_types(load_schema(n)) for n in LOG_EVENT_NAMES])


def _avro_datum(record: Record) -> dict[str, Any]:
    datum = record.model_dump()
    # fastavro takes a tuple in a union as (branch name, value): a ClockTick's ``incomplete`` (null or
    # an array) goes as a list.
    if isinstance(datum.get("incomplete"), tuple):
        datum["incomplete"] = list(datum["incomplete"])
    return datum


def encode_avro(record: Record) -> bytes:
    """Schemaless Avro binary of one record (the value bytes on a single-type topic)."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed_schema(record.schema_name), _avro_datum(record))
    return out.getvalue()


def decode_avro(model: type[R], data: bytes) -> R:
    plain = _reader_schema(model.schema_name)
    return model.model_validate(fastavro.schemaless_reader(io.BytesIO(data), plain, plain))


def encode_log_event(event: Event) -> bytes:
    """Schemaless Avro binary of an event on the unified log (union branch chosen by record name)."""
    out = io.BytesIO()
    branch = (f"{NAMESPACE}.{event.schema_name}", _avro_datum(event))
    fastavro.schemaless_writer(out, log_schema(), branch)
    return out.getvalue()


def decode_log_event(data: bytes) -> Event:
    plain = _log_reader_schema()
    branch = fastavro.schemaless_reader(io.BytesIO(data), plain, plain, return_record_name=True)
    return _event_from_branch(branch)


def write_event_container(
    out: IO[bytes], events: Iterable[Event], metadata: dict[str, str] | None = None, schema: Any = None
) -> int:
    """Write events to an Avro object container file with the unified-log schema embedded.

    ``metadata`` goes into the file header (e.g. ``enrollbridge.partition`` for a log archive);
    ``schema`` is the writer schema when it is not the current one (an earlier version of the log union).
    """
    count = 0

    def branches() -> Iterator[tuple[str, dict[str, Any]]]:
        nonlocal count
        for event in events:
            count += 1
            yield (f"{NAMESPACE}.{event.schema_name}", _avro_datum(event))

    writer = log_schema() if schema is None else fastavro.parse_schema(schema)
    fastavro.writer(out, writer, branches(), codec="deflate", metadata=metadata)
    return count


def container_metadata(source: IO[bytes]) -> dict[str, str]:
    """The user metadata of an Avro container file (the reader is left at the start)."""
    start = source.tell()
    reader = fastavro.reader(source)
    found = {k: v for k, v in reader.metadata.items() if not k.startswith("avro.")}
    source.seek(start)
    return found


def container_holds(source: IO[bytes], record_name: str) -> bool:
    """Whether an Avro container of the unified log holds a record named ``record_name`` (e.g. a
    ClockTick); reads raw datums only, up to the first such record. The reader is left at the start."""
    start = source.tell()
    wanted = f"{NAMESPACE}.{record_name}"
    try:
        for datum in fastavro.reader(source, return_record_name=True):
            if isinstance(datum, tuple) and datum[0] == wanted:
                return True
        return False
    finally:
        source.seek(start)


def read_event_container(source: IO[bytes]) -> Iterator[Event]:
    """Events from an Avro object container file written with (a compatible) unified-log schema."""
    for branch in _log_branches(source):
        yield _event_from_branch(branch)


def read_events_of(source: IO[bytes], persons: Callable[[str], bool]) -> Iterator[Event | None]:
    """``read_event_container`` building only the events of persons that ``persons`` says yes to (and
    clock ticks); None stands for each other record, so record numbers stay. A ``replay --jobs``
    worker reads every record and keeps its own persons' events."""
    for branch in _log_branches(source):
        person_key = branch[1].get("person_key")
        yield _event_from_branch(branch) if person_key is None or persons(person_key) else None


def _log_branches(source: IO[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(record name, datum) of each record of a log container.

    A file written with the current schema is read as written: resolving it against the reader
    schema would change nothing and doubled fastavro's time per record. Another version is resolved."""
    start = source.tell()
    reader = fastavro.reader(source, return_record_name=True)
    if _parsing_form(reader.writer_schema) != _current_log_form():
        source.seek(start)
        reader = fastavro.reader(source, _log_reader_schema(), return_record_name=True)
    return cast(Iterator[tuple[str, dict[str, Any]]], iter(reader))


@cache
def _current_log_form() -> str:
    return _parsing_form(log_schema())


def _parsing_form(schema: Any) -> str:
    """The Avro Parsing Canonical Form: equal for schemas that read and write the same bytes."""
    return str(fastavro.schema.to_parsing_canonical_form(schema))


def write_record_container(
    out: IO[bytes], name: str, records: Iterable[Record], metadata: dict[str, str] | None = None
) -> int:
    """Write records of one type (e.g. alert records) to an Avro container file with their schema embedded."""
    count = 0

    def datums() -> Iterator[dict[str, Any]]:
        nonlocal count
        for record in records:
            count += 1
            yield _avro_datum(record)

    fastavro.writer(out, parsed_schema(name), datums(), codec="deflate", metadata=metadata)
    return count


def read_record_container(source: IO[bytes], model: type[R]) -> Iterator[R]:
    """Records from a container written with (a version compatible with) the model's schema."""
    for datum in fastavro.reader(source, _reader_schema(model.schema_name)):
        yield model.model_validate(datum)


def _event_from_branch(branch: object) -> Event:
    """The event of a decoded union branch ``(full record name, datum)``."""
    name, datum = cast(tuple[str, dict[str, Any]], branch)
    return EVENT_TYPES[name.rpartition(".")[2]].model_validate(datum)


def canonical_dict(record: Record) -> dict[str, Any]:
    """The JSON object of a record's canonical line (events include ``type``)."""
    body = record.model_dump(mode="json", exclude_none=True)
    if isinstance(record, Event):
        return {"event_id": body.pop("event_id"), "type": record.schema_name, **body}
    return body


def to_json_line(record: Record) -> bytes:
    """The canonical JSON line of a record, without the trailing newline."""
    return orjson.dumps(canonical_dict(record))


def event_id_of(fields: dict[str, Any]) -> str:
    """The content id of an event given its canonical JSON object (``event_id`` ignored if present)."""
    body = {k: v for k, v in fields.items() if k != "event_id"}
    return hashlib.sha256(orjson.dumps(body)).hexdigest()[:32]


def new_event(model: type[E], **fields: Any) -> E:
    """Build an event of ``model`` from its fields and give it its content id."""
    draft = model(event_id=_PLACEHOLDER_ID, **fields)
    return draft.model_copy(update={"event_id": event_id_of(canonical_dict(draft))})


def trusted_event(model: type[E], fields: dict[str, Any]) -> E:
    """``new_event`` for fields already checked where they were made (a connector's parsers): the
    same event and content id, without validating every field again, which cost a connector a third
    of its time per record. ``fields`` is taken over."""
    return trusted_event_line(model, fields)[0]


def trusted_event_line(model: type[E], fields: dict[str, Any]) -> tuple[E, bytes]:
    """``trusted_event`` and the event's canonical JSON line (``to_json_line``, with its newline),
    made from the body its content id hashes: a connector writing JSON Lines renders it once."""
    values, given = _in_order(model, fields)
    event = _construct(model, values, given)
    typed = _typed_body(event)
    values["event_id"] = event_id = hashlib.sha256(typed).hexdigest()[:32]
    return event, _line(event_id, typed)


def trusted_line(model: type[Event], fields: dict[str, Any]) -> bytes:
    """Only the line of ``trusted_event_line``: the event itself is not built (what writing JSON
    Lines needs; building it cost about a tenth of a connector's time per record)."""
    values, given = _in_order(model, fields)
    plain = _json_plan(model) is not None  # else only pydantic renders it
    typed = _plain_body(model, values) if plain else _typed_body(_construct(model, values, given))
    return _line(hashlib.sha256(typed).hexdigest()[:32], typed)


def _in_order(model: type[Event], fields: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """An event's field values in its model's order (``event_id`` a placeholder), and the names
    ``new_event``'s model counts as set."""
    given = {*fields, "event_id"}
    # The serializer, and so the content id, go by the model's order.
    return _completed(model, {**fields, "event_id": _PLACEHOLDER_ID}, given), given


def _completed(model: type[Record], fields: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """``fields`` with the model's defaults for the names not ``given``, in the model's field order; a
    name the model does not have, or a field without a value or a default, is a TypeError."""
    order, names, defaults = _construction(model)
    if given != names:  # some left to their defaults, or a name the model does not have
        if not given <= names:
            raise TypeError(f"{model.__name__} has no field {', '.join(sorted(given - names))}")
        missing = names - given - defaults.keys()
        if missing:
            raise TypeError(f"{model.__name__}: no value for {', '.join(sorted(missing))}")
        fields = {**defaults, **fields}
    return {name: fields[name] for name in order}


def _line(event_id: str, typed: bytes) -> bytes:
    """The canonical line is {"event_id": ..., "type": ..., fields}: the typed body after the id."""
    return b'{"event_id":"' + event_id.encode() + b'",' + typed[1:] + b"\n"


def _typed_body(event: Event) -> bytes:
    """The canonical JSON object of an event without ``event_id``, ``type`` first: what its content id
    hashes, and its canonical line after ``event_id``."""
    if _json_plan(type(event)) is None:
        body = event.model_dump(mode="json", exclude_none=True)
        del body["event_id"]
        return orjson.dumps({"type": event.schema_name, **body})
    return _plain_body(type(event), event.__dict__)


def _plain_body(model: type[Event], values: dict[str, Any]) -> bytes:
    """``_typed_body`` of a model with a JSON plan, from its field values: what
    model_dump(mode="json", exclude_none=True) gives, without pydantic's serializer (it cost a
    connector a quarter of its time per record). Tests hold the two to the same bytes."""
    typed: dict[str, Any] = {"type": model.schema_name}
    for name, render in _json_plan(model) or ():
        value = values[name]
        if value is not None:
            typed[name] = value if render is None else render(value)
    return orjson.dumps(typed)


_PLAIN_JSON = (str, int, bool)  # held as themselves in JSON (enums are held as their plain values)


@cache
def _json_plan(model: type[Event]) -> tuple[tuple[str, Callable[[Any], Any] | None], ...] | None:
    """Each field of an event model but ``event_id``, in order, with its JSON serializer (None when
    the value is its own JSON); None for a model with a field of any other kind (a list, a nested
    record), which only pydantic renders."""
    plan: list[tuple[str, Callable[[Any], Any] | None]] = []
    for name, info in model.model_fields.items():
        if name == "event_id":
            continue
        kind = info.annotation
        metadata = list(info.metadata)
        options = [arg for arg in get_args(kind) if arg is not type(None)]
        if get_origin(kind) in (Union, UnionType) and len(options) == 1:  # X | None
            kind = options[0]
        if get_origin(kind) is Annotated:
            kind, *more = get_args(kind)
            metadata.extend(more)
        serializers = [item for item in metadata if isinstance(item, PlainSerializer)]
        if not (isinstance(kind, type) and issubclass(kind, _PLAIN_JSON)) or len(serializers) > 1:
            return None
        render = serializers[0].func if serializers and serializers[0].when_used in ("json", "always") else None
        plan.append((name, cast(Callable[[Any], Any] | None, render)))
    return tuple(plan)


def trusted_record(model: type[R], **fields: Any) -> R:
    """``model(**fields)`` for values the rules built from records already validated: the same record,
    without validating every field again (that cost the rules a tenth of their time). A test checks
    that every record a three-season replay builds this way validates unchanged (tests/test_season.py)."""
    given = set(fields)
    return _construct(model, _completed(model, fields, given), given)


def event_values(event: Event) -> tuple[Any, ...]:
    """An event's field values in its model's order: what ``event_from_values`` takes back, and much
    cheaper to send to another process than the model."""
    return tuple(map(event.__dict__.__getitem__, _construction(type(event))[0]))


def event_from_values(model: type[E], values: Sequence[Any]) -> E:
    """The event whose ``event_values`` these are, built without validating them again."""
    order, names, _ = _construction(model)
    return _construct(model, dict(zip(order, values, strict=True)), set(names))


def _construct(model: type[R], values: dict[str, Any], given: set[str]) -> R:
    """What pydantic's model_construct does, without its per-field look-ups of aliases and defaults."""
    event = model.__new__(model)
    object.__setattr__(event, "__dict__", values)
    object.__setattr__(event, "__pydantic_fields_set__", given)
    object.__setattr__(event, "__pydantic_extra__", None)
    object.__setattr__(event, "__pydantic_private__", None)
    return event


@cache
def _construction(model: type[Record]) -> tuple[tuple[str, ...], frozenset[str], dict[str, Any]]:
    """The fields of a model in order and as a set, and the defaults of those that have one."""
    if model.__pydantic_post_init__ or model.__private_attributes__ or model.model_config.get("extra") == "allow":
        raise TypeError(f"{model.__name__} needs more than its fields set to be built")
    defaults = {}
    for name, info in model.model_fields.items():
        if info.default_factory is not None or info.alias:
            raise TypeError(f"{model.__name__}.{name}: a default factory or an alias needs model_construct")
        if not info.is_required():
            defaults[name] = info.default
    return tuple(model.model_fields), frozenset(model.model_fields), defaults


def event_from_json(obj: dict[str, Any]) -> Event:
    """Validate a canonical JSON object (with ``type``) as the event it names."""
    body = dict(obj)
    type_name = body.pop("type", None)
    model = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if model is None:
        raise ValueError(f"unknown event type {type_name!r}; expected one of {', '.join(EVENT_TYPES)}")
    return model.model_validate(body)


class JsonLinesWriter:
    """Appends canonical JSON lines of records to a file; the one way records are written as JSON Lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._out: IO[bytes] = path.open("wb")

    def write(self, record: Record) -> None:
        self._out.write(to_json_line(record) + b"\n")
        self.count += 1

    def write_lines(self, lines: bytes) -> None:
        """Records already as their canonical lines, each with its newline."""
        self._out.write(lines)
        self.count += lines.count(b"\n")

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- messages on topics: Avro single-object encoding ---------------------------------------------
#
# Every message value is C3 01, the 8-byte CRC-64-AVRO fingerprint of the writer schema, then the
# Avro binary body (the Avro specification's single-object encoding). A message therefore says
# which schema wrote it; readers resolve it to the current schema without a registry.

SINGLE_OBJECT_MARKER = b"\xc3\x01"


class UndecodableMessage(ValueError):
    """A message that is not a record of the expected kinds; ``code`` goes into the dead letter."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def fingerprint(schema: Any) -> bytes:
    """CRC-64-AVRO fingerprint of a schema's parsing canonical form, as the 8 bytes written on the wire."""
    canonical = fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(schema))
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


@cache
def _writer_schemas() -> dict[bytes, tuple[str, Any]]:
    """Fingerprint -> (record name, parsed schema without logical types) for every known writer schema:
    the current ``.avsc`` files and the earlier versions kept under ``schemas/history/``."""
    known: dict[bytes, tuple[str, Any]] = {}
    for name in RECORD_NAMES:
        for version in (load_schema(name), *historical_schemas(name)):
            known[fingerprint(version)] = (name, fastavro.parse_schema(_without_logical_types(version)))
    return known


def encode_message(record: Record) -> bytes:
    """A record as a topic message value (single-object encoding with the current schema)."""
    name = record.schema_name
    encode = _compiled_encoder(name)
    if encode is not None:
        return SINGLE_OBJECT_MARKER + _current_fingerprint(name) + encode(record)
    out = io.BytesIO()
    out.write(SINGLE_OBJECT_MARKER)
    out.write(_current_fingerprint(name))
    fastavro.schemaless_writer(out, parsed_schema(name), _avro_datum(record))
    return out.getvalue()


@cache
def _compiled_encoder(name: str) -> Callable[[Any], bytes] | None:
    """The record's encoder compiled from its schema (schemas.avro_binary), or None: fastavro then."""
    return compile_encoder(parsed_schema(name))


@cache
def _current_fingerprint(name: str) -> bytes:
    return fingerprint(load_schema(name))


def decode_message(data: bytes | None, accepted: tuple[str, ...]) -> Record:
    """Decode a message value whose writer schema must be one of the ``accepted`` record names.

    Raises UndecodableMessage (codes UNDECODABLE, UNKNOWN_SCHEMA, UNEXPECTED_SCHEMA, INVALID_RECORD).
    """
    if not data or data[:2] != SINGLE_OBJECT_MARKER or len(data) < 10:
        raise UndecodableMessage("UNDECODABLE", "not an Avro single-object encoded record")
    known = _writer_schemas().get(data[2:10])
    if known is None:
        raise UndecodableMessage("UNKNOWN_SCHEMA", f"written with an unknown schema (fingerprint {data[2:10].hex()})")
    name, writer = known
    if name not in accepted:
        raise UndecodableMessage("UNEXPECTED_SCHEMA", f"a {name} record where {' or '.join(accepted)} is expected")
    stream = io.BytesIO(data)
    stream.seek(10)
    # The current schema needs no resolution (it would change nothing and took half the time).
    reader = None if data[2:10] == _current_fingerprint(name) else _reader_schema(name)
    try:
        datum = fastavro.schemaless_reader(stream, writer, reader)
    except Exception as error:  # fastavro raises EOFError, ValueError, IndexError... on damaged bodies
        raise UndecodableMessage("UNDECODABLE", f"damaged {name} body: {type(error).__name__}") from None
    if stream.tell() != len(data):
        raise UndecodableMessage("UNDECODABLE", f"{len(data) - stream.tell()} bytes after the {name} record")
    try:
        return MODELS_BY_NAME[name].model_validate(datum)
    except ValueError as error:
        raise UndecodableMessage("INVALID_RECORD", f"{name} violates the contract: {error}") from None


def peek_event_id(data: bytes) -> str | None:
    """The ``event_id`` of an event message without decoding the rest (every event record starts
    with it); None for anything that does not look like one."""
    if len(data) < 11 or data[:2] != SINGLE_OBJECT_MARKER:
        return None
    length = data[10] >> 1  # zigzag varint; event ids are 32 characters, one byte of length
    if data[10] & 0x80 or length != 32 or len(data) < 43:
        return None
    return data[11:43].decode("ascii", errors="replace")

"""Backward compatibility of Avro schemas, as Confluent Schema Registry defines BACKWARD: a consumer
using the new schema can read every record written with the old one, by Avro's schema resolution
rules (fields matched by name or alias; a field the old schema lacks needs a default; promotions
int -> long -> float -> double and string <-> bytes; enum symbols may be added, removed only when
the new enum has a default; unions resolved branch by branch).

fastavro resolves schemas when reading but has no compatibility check, hence this module.
"""

from __future__ import annotations

from typing import Any

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def backward_problems(new: Any, old: Any) -> list[str]:
    """Why data written with ``old`` cannot be read with ``new``; empty when ``new`` is backward compatible."""
    checker = _Checker(_named_types(new), _named_types(old))
    return checker.check(new, old, _name(new) or "schema")


def _name(schema: Any) -> str | None:
    return schema.get("name") if isinstance(schema, dict) else None


def _full_name(schema: dict[str, Any], namespace: str | None) -> str:
    name = str(schema["name"])
    space = schema.get("namespace", namespace)
    return name if "." in name or not space else f"{space}.{name}"


def _named_types(schema: Any, namespace: str | None = None, found: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every record, enum and fixed defined in a schema, by full and by short name."""
    found = {} if found is None else found
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, namespace, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed"):
            full = _full_name(schema, namespace)
            found[full] = found[full.rpartition(".")[2]] = schema
            namespace = full.rpartition(".")[0] or namespace
        for field in schema.get("fields", []) if kind == "record" else []:
            _named_types(field["type"], namespace, found)
        if kind == "array":
            _named_types(schema["items"], namespace, found)
        if kind == "map":
            _named_types(schema["values"], namespace, found)
    return found


class _Checker:
    def __init__(self, reader_names: dict[str, Any], writer_names: dict[str, Any]) -> None:
        self.reader_names = reader_names
        self.writer_names = writer_names
        self.visiting: set[tuple[str, str]] = set()

    def _resolve(self, schema: Any, names: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return names[schema]
        if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
            return schema["type"]  # {"type": "long", "logicalType": ...} reads like "long"
        return schema

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        reader = self._resolve(reader, self.reader_names)
        writer = self._resolve(writer, self.writer_names)
        if isinstance(writer, list):
            return [problem for branch in writer for problem in self.check(reader, branch, path)]
        if isinstance(reader, list):
            if any(not self.check(branch, writer, path) for branch in reader):
                return []
            return [f"{path}: no branch of the new union reads the old {_describe(writer)}"]
        reader_kind = reader if isinstance(reader, str) else reader["type"]
        writer_kind = writer if isinstance(writer, str) else writer["type"]
        if reader_kind != writer_kind:
            if writer_kind in PROMOTIONS and reader_kind in PROMOTIONS[writer_kind]:
                return []
            return [f"{path}: type changed from {_describe(writer)} to {_describe(reader)}"]
        if reader_kind in PRIMITIVES:
            return []
        if reader_kind == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]")
        if reader_kind == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}")
        if not _same_name(reader, writer):
            return [f"{path}: {reader_kind} {reader['name']} does not read {writer['name']} (names differ, no alias)"]
        if reader_kind == "fixed":
            return [] if reader["size"] == writer["size"] else [f"{path}: fixed size changed"]
        if reader_kind == "enum":
            removed = sorted(set(writer["symbols"]) - set(reader["symbols"]))
            if removed and "default" not in reader:
                return [f"{path}: enum symbols removed without a default: {', '.join(removed)}"]
            return []
        return self._record(reader, writer, path)

    def _record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        pair = (str(reader["name"]), str(writer["name"]))
        if pair in self.visiting:  # a recursive type: already being checked further up
            return []
        self.visiting.add(pair)
        problems = []
        old_fields = {field["name"]: field for field in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            old = next((old_fields[name] for name in names if name in old_fields), None)
            where = f"{path}.{field['name']}"
            if old is None:
                if "default" not in field:
                    problems.append(f"{where}: new field without a default")
                continue
            problems += self.check(field["type"], old["type"], where)
        self.visiting.discard(pair)
        return problems


def _same_name(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    short = str(writer["name"]).rpartition(".")[2]
    accepted = {str(reader["name"]).rpartition(".")[2], *(str(a).rpartition(".")[2] for a in reader.get("aliases", []))}
    return short in accepted


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return f"{schema['type']} {schema.get('name', '')}".strip()

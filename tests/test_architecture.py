"""The layering of the packages (README, "Layout"): no module imports a module of a higher layer, and
only one module of the product touches Faust.

Imports are read from the source with ``ast`` (including imports inside functions), so a lazy import
that runs upwards fails here just like a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module belongs to the longest prefix that names it.
LAYERS: dict[str, int] = {
    "schemas": 0,  # the contract
    "infra": 1,  # errors, settings, Kafka clients, embedded broker, topic names and admin
    "streams": 2,  # only the package's own __init__; its modules live in core, replay and live
    "streams.core": 2,  # the rules core: policy, state, rules, engine, coverage, figures (no I/O)
    "streams.replay": 3,  # the offline driver of the core
    "connectors": 4,  # sources and sinks
    "streams.live": 5,  # the live wiring (batch processor, its store, the Faust adapter)
    "audit": 6,  # archive and verification
    "enrollbridge": 7,  # the application: command line, demo, report, dashboard, work lists, synth, bench
}
FAUST_DOOR = "streams.live.faust_app"
# The benchmark's baseline is, by definition, a minimal Faust app of its own.
FAUST_ALLOWED = {FAUST_DOOR, "enrollbridge.bench.baselines"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, layer)
    return None if best is None else best[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _product_modules() -> list[Path]:
    return sorted(p for prefix in {k.split(".")[0] for k in LAYERS} for p in (ROOT / prefix).rglob("*.py"))


def test_every_product_module_has_a_layer() -> None:
    assert [p for p in _product_modules() if _layer(_module_name(p)) is None] == []
    top_level = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests"}
    assert top_level == {k.split(".")[0] for k in LAYERS}, "a new top-level package needs a layer"


def test_no_module_imports_a_higher_layer() -> None:
    upwards = []
    for path in _product_modules():
        module = _module_name(path)
        own = _layer(module)
        assert own is not None
        for line, imported in _imports(path):
            target = _layer(imported)
            if target is not None and target > own:
                upwards.append(f"{path.relative_to(ROOT)}:{line}: {module} (layer {own}) imports {imported} ({target})")
    assert upwards == []


def test_only_the_adapter_touches_faust() -> None:
    touching = sorted(
        f"{path.relative_to(ROOT)}:{line}"
        for path in _product_modules()
        for line, imported in _imports(path)
        if imported.split(".")[0] in {"faust", "mode"} and _module_name(path) not in FAUST_ALLOWED
    )
    assert touching == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from enrollbridge.cli import main\n", ["enrollbridge.cli"]),
        ("def f():\n    import streams.live.faust_app\n", ["streams.live.faust_app"]),
    ],
)
def test_the_import_reader_sees_lazy_and_top_level_imports(tmp_path: Path, source: str, expected: list[str]) -> None:
    # The checks above are only as good as this reader: it must see imports inside functions too.
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert [name for _, name in _imports(path)] == expected


def test_an_upward_import_is_caught() -> None:
    assert _layer("streams.core.rules") == 2
    assert _layer("streams.live.faust_app") == 5
    assert _layer("streams.core.rules") < _layer("connectors.ingest") < _layer("enrollbridge.cli")  # type: ignore[operator]

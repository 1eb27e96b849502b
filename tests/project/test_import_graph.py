"""The package's imports run one way (docs/design.md): the Hub-shipped model code (``models/``) ← families ←
tokenization/data/plotting ← hub ← training/export/inference/convert ← analysis/serving (and any other library
module) ← commands ← cli, with no cycle: a library module never imports from ``commands/``.

Every ``import`` statement of every module is read with ``ast`` — function-level imports included, since those are
how a cycle hides — and resolved to the package module it names. The one exception: a package ``__init__``'s lazy
re-exports in a module-level ``__getattr__`` (PEP 562), which only offer a name of a higher layer at the package's
front door (``hf_seq2seq.export_onnx``) and are never run by the package's own modules.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "hf_seq2seq"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

# The package of the files that ship to the Hub as remote code (CONTRIBUTING.md, "Hard layout rule"): below every
# other layer, and importing only its own flat siblings
MODELS = f"{PACKAGE}.models"

# The layer of each top-level module or package; a module may import only its own layer or a lower one.
# A new module not listed here is placed in the library layer above training (rank 5, beside analysis and serving):
# below commands/, which only parse options and call the library, and cli, which dispatches to the commands.
LAYERS = {
    "dependencies": 0,  # the version check the package root runs first: stdlib and packaging only
    "families": 1,
    PACKAGE: 2,  # the package root registers the Auto classes: models, pipelines, the tokenizer trainer
    "tokenization": 2,
    "data": 2,
    "tasks": 2,
    "metrics": 2,
    "plotting": 2,
    "captioning_data": 2,
    "hub": 3,
    "training": 4,
    "export": 4,  # the exporters and the export folder format
    "convert": 4,  # model conversion (Marian, JoeyNMT): over models, families, tokenization, hub
    "inference": 4,  # loading a folder or an export, the engines, the translate loop (reads export folders)
    "serving": 5,  # hf-seq2seq serve's app, batcher and schemas: over inference; only commands/serve.py imports it
    "analysis": 5,
    "commands": 6,  # one module per command: over every library layer; no library module imports it
    "cli": 7,
}
DEFAULT_LAYER = 5


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "model_cards" not in p.parts}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` (a dotted path, possibly ``module.attribute``) refers to, if any."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """``(imported package module, line, relative)`` for every import statement in the file."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    facade = set()
    if is_package:  # a package's lazy re-exports (PEP 562 ``__getattr__``) are a facade, not a dependency
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == "__getattr__":
                facade.update(id(n) for n in ast.walk(fn))
    found = []
    for node in ast.walk(tree):
        if id(node) in facade:
            continue
        if isinstance(node, ast.Import):
            targets = [(alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [(f"{prefix}.{alias.name}", bool(node.level)) for alias in node.names]
        else:
            continue
        for name, relative in targets:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                target = _resolve(name, modules)
                if target and target != module:
                    found.append((target, node.lineno, relative))
    return found


@functools.cache
def _graph() -> dict[str, list[tuple[str, int, bool]]]:
    """Read once per test process (every test here asks for it; the tests only read it)."""
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def _is_hub_file(module: str) -> bool:
    return module == MODELS or module.startswith(MODELS + ".")


def _layer(module: str) -> int:
    # ``python -m <package>``: an entry point, like cli, that nothing imports
    if module.endswith(".__main__"):
        return LAYERS["cli"]
    return 0 if _is_hub_file(module) else LAYERS.get(_top(module), DEFAULT_LAYER)


def test_lazy_package_reexports_are_not_edges():
    # hf_seq2seq.__init__ may offer export_onnx & co. lazily; the module graph must not count that as the root
    # depending on the export package (which imports the root to register the model types)
    graph = _graph()
    assert not any(t.startswith(f"{PACKAGE}.export") for t, _, _ in graph[PACKAGE])


def test_graph_reads_every_module_and_function_level_imports():
    graph = _graph()
    assert f"{PACKAGE}.training.loop" in graph and f"{PACKAGE}.cli" in graph
    # cli's commands are imported by name at run time; training imports the package root inside a function
    assert any(t == PACKAGE for t, _, _ in graph[f"{PACKAGE}.training.task"])


def test_no_import_cycle():
    graph = {m: sorted({t for t, _, _ in edges}) for m, edges in _graph().items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)


def test_imports_run_one_way():
    wrong = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)}) on line {line}"
        for m, edges in _graph().items()
        for t, line, _ in edges
        if _layer(t) > _layer(m)
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_commands_sit_above_every_library_module_and_cli_above_commands():
    # so that a library module (serving, analysis, inference, a new module at the default layer...) importing
    # from commands/ fails test_imports_run_one_way: commands call the library, never the other way round
    commands, cli = LAYERS["commands"], LAYERS["cli"]
    assert cli > commands
    assert all(
        _layer(m) == commands for m in _graph() if _top(m) == "commands" and not m.endswith(".__main__")
    )
    library = [m for m in _graph() if _top(m) not in ("commands", "cli") and not m.endswith(".__main__")]
    assert f"{PACKAGE}.serving.app" in library and f"{PACKAGE}.analysis" in library
    wrong = [f"{m} (layer {_layer(m)})" for m in library if _layer(m) >= commands]
    assert not wrong, f"library modules not below commands/ (layer {commands}): {wrong}"
    assert DEFAULT_LAYER < commands  # a module not listed in LAYERS is library too


def test_entry_points_are_imported_by_no_module():
    graph = _graph()
    entry_points = [m for m in graph if m.endswith(".__main__")]
    assert f"{PACKAGE}.training.__main__" in entry_points
    wrong = [f"{m} imports {t}" for m, edges in graph.items() for t, _, _ in edges if t in entry_points]
    assert not wrong, wrong


def test_models_import_only_models():
    graph = _graph()
    shipped = [m for m in graph if _is_hub_file(m)]
    assert f"{MODELS}.modeling_rnn_seq2seq" in shipped and f"{MODELS}.pipeline_text2text" in shipped
    # flat: a saved folder holds the files side by side, so models/ has no subpackage
    assert all(m.count(".") == 2 for m in shipped if m != MODELS), shipped
    wrong = [
        f"{m} line {line} imports {t}"
        for m in shipped
        for t, line, relative in graph[m]
        if not (relative and _is_hub_file(t) and t != MODELS)
    ]
    assert not wrong, "models/ may import only its flat siblings (from .x import ...):\n" + "\n".join(wrong)

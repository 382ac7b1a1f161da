"""One-way imports inside ``src/ssdlite``, checked by parsing (nothing is imported).

The layers, bottom to top: ``errors``/``files`` (the two top-level modules) <- ``models`` <- ``data``
<- ``metrics`` <- ``engine`` <- ``doctor``, ``deploy`` <- ``serve`` <- ``cli``. A module may import from its own
package and from the packages below it, never from above; ``doctor`` and ``deploy`` are siblings and
do not import each other; ``errors`` and ``files`` import nothing from ssdlite but each other.
``ssdlite/__init__.py`` and ``ssdlite/__main__.py`` are the top and may import anything; no other
module imports the top package (``from ssdlite import X``): it pulls in everything. Any other
top-level module has no layer and belongs in a package. Inside ``cli`` a command module does not
import another command: shared code lives in ``cli/options.py`` or a ``cli/_*.py`` helper, which any
command may import; ``cli/__init__.py`` (the dispatcher that lists the commands) and ``cli/__main__.py``
may import the commands.

Every import counts: at module level, inside functions (lazy imports are still dependencies),
under ``if TYPE_CHECKING``, relative ones (resolved against the importing module's package) and
``importlib.import_module("ssdlite...")`` with a literal name. ``from ssdlite.cli import train``
is an import of the module ``ssdlite.cli.train``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ssdlite"

#: Rank of each layer: a module may import from ranks below or equal to its own (equal: the same package only).
LAYERS = {"errors": 0, "files": 0, "models": 1, "data": 2, "metrics": 3, "engine": 4, "doctor": 5, "deploy": 5, "serve": 6, "cli": 7}
BOTTOM = ("errors", "files")
TOP = ("ssdlite", "ssdlite.__main__")
ORDER = "errors/files <- models <- data <- metrics <- engine <- doctor, deploy <- serve <- cli"
#: Entry points of the cli package, which import the command modules.
CLI_DISPATCHERS = ("ssdlite.cli", "ssdlite.cli.__main__")


def module_name(relpath: str) -> str:
    """``cli/demo.py`` -> ``ssdlite.cli.demo``; ``cli/__init__.py`` -> ``ssdlite.cli``."""
    parts = ["ssdlite", *relpath[: -len(".py")].split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """``(line, module)`` for every ssdlite module the tree imports, resolved against ``known`` modules."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def add(line: int, target: str) -> None:
        # The longest known prefix: ``ssdlite.models.ssdlite.create_model`` is the module ``ssdlite.models.ssdlite``.
        parts = target.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in known:
                found.append((line, ".".join(parts[:i])))
                return

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ssdlite":
                    add(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "ssdlite":
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(node.lineno, submodule if submodule in known else base)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            value = node.args[0].value
            if called in ("import_module", "__import__") and isinstance(value, str) and value.split(".")[0] == "ssdlite":
                add(node.lineno, value)
    return sorted(set(found))


def _layer(module: str) -> str | None:
    """The layer a module belongs to: a package name, ``errors``/``files``, or ``None`` (top, or no layer)."""
    parts = module.split(".")
    if module in TOP or len(parts) < 2:
        return None
    return parts[1]


def _is_cli_helper(module: str) -> bool:
    leaf = module.split(".")[-1]
    return module == "ssdlite.cli" or leaf == "options" or leaf.startswith("_")


def layer_violations(sources: dict[str, str]) -> list[str]:
    """Every import that breaks the layering, as ``file:line: from -> to (rule)``.

    ``sources`` maps paths relative to ``src/ssdlite`` (``"cli/demo.py"``) to their source text.
    """
    names = {rel: module_name(rel) for rel in sources}
    known = set(names.values())
    imports = {rel: imported_names(ast.parse(text, filename=rel), names[rel], rel.endswith("__init__.py"), known) for rel, text in sources.items()}
    stray = {names[rel] for rel in sources if "/" not in rel and names[rel] not in TOP and _layer(names[rel]) not in LAYERS}
    problems: list[str] = []
    for rel in sorted(sources):
        where = f"src/ssdlite/{rel}"
        if names[rel] in stray:
            users = [f"src/ssdlite/{r}:{line}" for r in sorted(sources) for line, t in imports[r] if t == names[rel]]
            problems.append(
                f"{where}:1: top-level module {rel[: -len('.py')]} belongs in a package"
                + (f" (imported at {', '.join(users)})" if users else "")
            )
        elif rel.endswith("/__init__.py") and rel.count("/") == 1 and rel.split("/")[0] not in LAYERS:
            problems.append(f"{where}:1: package {rel.split('/')[0]} has no place in the layer order {ORDER}")
    for rel in sorted(sources):
        importer = names[rel]
        if importer in TOP or importer in stray:
            continue  # the top may import anything; a stray module is reported once, above
        src_layer = _layer(importer)
        if src_layer not in LAYERS:
            continue  # a package outside the order, reported once, above
        for line, target in imports[rel]:
            where = f"src/ssdlite/{rel}:{line}"
            dst_layer = _layer(target)
            if target == importer or target in stray or (dst_layer is not None and dst_layer not in LAYERS):
                continue  # itself; a stray module or a package outside the order, reported once, above
            if target in TOP:
                problems.append(f"{where}: {src_layer} -> ssdlite (only the top imports the ssdlite package itself; import from the defining module)")
            elif src_layer in BOTTOM:
                if dst_layer not in BOTTOM:
                    problems.append(f"{where}: {src_layer} -> {dst_layer} (errors and files import nothing from ssdlite but each other)")
            elif src_layer == dst_layer:
                if src_layer == "cli" and importer not in CLI_DISPATCHERS and not _is_cli_helper(target):
                    problems.append(
                        f"{where}: {importer.removeprefix('ssdlite.')} -> {target.removeprefix('ssdlite.')} "
                        "(a cli command imports another command; shared code goes in cli/options.py or cli/_*.py)"
                    )
            elif LAYERS[dst_layer] > LAYERS[src_layer]:
                problems.append(f"{where}: {src_layer} -> {dst_layer} (upward: {src_layer} sits below {dst_layer} in {ORDER})")
            elif LAYERS[dst_layer] == LAYERS[src_layer]:
                problems.append(f"{where}: {src_layer} -> {dst_layer} (siblings {src_layer} and {dst_layer} must not import each other)")
    return problems


def read_sources(root: Path | None = None) -> dict[str, str]:
    """``{"cli/demo.py": source, ...}`` for every module under ``root`` (default: ``src/ssdlite``)."""
    root = SRC if root is None else root
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py"))}


def test_imports_follow_the_layers():
    sources = read_sources()
    assert len(sources) > 20, f"found only {len(sources)} modules under {SRC}"
    problems = layer_violations(sources)
    assert not problems, f"{len(problems)} imports break the layering {ORDER}:\n" + "\n".join(problems)


#: A small package with one import of every kind, allowed and not.
SYNTHETIC = {
    "__init__.py": "from ssdlite.cli import main\nfrom ssdlite.deploy.draw import x\n",
    "__main__.py": "import ssdlite.cli\n",
    "errors.py": "from ssdlite.files import atomic_write\n",
    "files.py": "from . import models\n",
    "helpers.py": "import os\n",
    "models/__init__.py": "from .heads import Head\n",
    "models/heads.py": "import torch\nfrom ssdlite.errors import UserError\nfrom ssdlite import files\n",
    "models/loss.py": "def lazy():\n    from ..engine import trainer\n    return trainer\n",
    "engine/__init__.py": "",
    "engine/trainer.py": "from typing import TYPE_CHECKING\nfrom ssdlite.models import heads\nfrom ssdlite import create_model\nif TYPE_CHECKING:\n    from ssdlite.doctor.run import Report\n",
    "doctor/__init__.py": "",
    "doctor/run.py": "import ssdlite.deploy.draw\nimport ssdlite.helpers\n",
    "deploy/__init__.py": "",
    "deploy/draw.py": "from ssdlite.models.heads import Head\n",
    "cli/__init__.py": "from ssdlite.cli import demo, train\n",
    "cli/__main__.py": "from ssdlite.cli import main\n",
    "cli/options.py": "from ssdlite.engine import trainer\n",
    "cli/_shared.py": "from ssdlite.deploy import draw\n",
    "cli/demo.py": "from .train import run\nfrom . import options, _shared\nfrom ssdlite.cli.options import add_flags\n",
    "cli/train.py": "import importlib\n\n\ndef f():\n    return importlib.import_module('ssdlite.cli.demo')\n",
    "plugins/__init__.py": "",
}


def test_the_checker_flags_each_kind_of_violation_and_nothing_else():
    assert layer_violations(SYNTHETIC) == [
        "src/ssdlite/helpers.py:1: top-level module helpers belongs in a package (imported at src/ssdlite/doctor/run.py:2)",
        f"src/ssdlite/plugins/__init__.py:1: package plugins has no place in the layer order {ORDER}",
        "src/ssdlite/cli/demo.py:1: cli.demo -> cli.train (a cli command imports another command; shared code goes in cli/options.py or cli/_*.py)",
        "src/ssdlite/cli/train.py:5: cli.train -> cli.demo (a cli command imports another command; shared code goes in cli/options.py or cli/_*.py)",
        "src/ssdlite/doctor/run.py:1: doctor -> deploy (siblings doctor and deploy must not import each other)",
        "src/ssdlite/engine/trainer.py:3: engine -> ssdlite (only the top imports the ssdlite package itself; import from the defining module)",
        f"src/ssdlite/engine/trainer.py:5: engine -> doctor (upward: engine sits below doctor in {ORDER})",
        "src/ssdlite/files.py:1: files -> models (errors and files import nothing from ssdlite but each other)",
        f"src/ssdlite/models/loss.py:2: models -> engine (upward: models sits below engine in {ORDER})",
    ]


def test_relative_imports_resolve_against_the_importing_package():
    known = {"ssdlite", "ssdlite.models", "ssdlite.models.heads", "ssdlite.engine", "ssdlite.engine.trainer"}
    tree = ast.parse("from . import heads\nfrom .heads import Head\nfrom .. import engine\nfrom ..engine.trainer import fit\n")
    assert imported_names(tree, "ssdlite.models.loss", False, known) == [
        (1, "ssdlite.models.heads"), (2, "ssdlite.models.heads"), (3, "ssdlite.engine"), (4, "ssdlite.engine.trainer")
    ]
    # In a package's __init__, "." is the package itself.
    assert imported_names(ast.parse("from .heads import Head\n"), "ssdlite.models", True, known) == [(1, "ssdlite.models.heads")]


def import_cycles(sources: dict[str, str]) -> list[list[str]]:
    """Every set of modules that import each other, directly or around a loop (file level: every import counts, as
    in :func:`layer_violations`), as sorted module lists; a package's ``__init__`` is the package's own module."""
    names = {rel: module_name(rel) for rel in sources}
    known = set(names.values())
    graph = {
        names[rel]: {t for _, t in imported_names(ast.parse(text, filename=rel), names[rel], rel.endswith("__init__.py"), known)} - {names[rel]}
        for rel, text in sources.items()
    }
    # Tarjan's strongly connected components; a component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_no_module_imports_itself_around_a_loop():
    cycles = import_cycles(read_sources())
    assert not cycles, "modules that import each other (a cycle):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_loop_through_a_lazy_import():
    sources = {
        "deploy/__init__.py": "",
        "deploy/backends.py": "def f():\n    from ssdlite.deploy.static import x\n",
        "deploy/static.py": "from ssdlite.deploy.litert import y\n",
        "deploy/litert.py": "from ssdlite.deploy.backends import StaticBackend\n",
        "deploy/draw.py": "from ssdlite.deploy.backends import f\n",
    }
    assert import_cycles(sources) == [["ssdlite.deploy.backends", "ssdlite.deploy.litert", "ssdlite.deploy.static"]]

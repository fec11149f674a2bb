"""The library's import rules, checked on the source with ``ast`` (no import needed).

* Views (``viz``, ``widgets``) import no method module: from ``locedit`` only ``models`` (the ``Model`` type),
  ``arch`` and each other. They draw the data a method returns, or call the functions the chapter passes in.
* No module imports a ``_private`` name from another ``locedit`` module: what another module needs is public.
* The map in ``locedit/__init__.py`` names every module, and every module imports only what the map allows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "lib" / "locedit"
VIEWS = {"viz": {"locedit.models", "locedit.arch", "locedit.widgets"},
         "widgets": {"locedit.models", "locedit.arch", "locedit.viz"}}  # fmt: skip
# The modules checked for private imports: every module of the library.
NO_PRIVATE_IMPORTS = sorted(str(path.relative_to(LIB)) for path in LIB.rglob("*.py"))


def _locedit_imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, name, line) for every ``import locedit…`` / ``from locedit… import name`` anywhere in the file
    (inside functions too); ``name`` is None for ``import locedit.x``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "locedit"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "locedit":
            out += [(node.module, a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            out.append((f"relative:{node.module}", None, node.lineno))  # relative imports would dodge the check
    return out


def _view_files(view: str) -> list[Path]:
    """A view's source files: ``<view>.py``, or every file of the ``<view>/`` package."""
    return [LIB / f"{view}.py"] if (LIB / f"{view}.py").exists() else sorted((LIB / view).rglob("*.py"))


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_views_import_no_method_module(view):
    allowed = VIEWS[view]
    found, bad = [], []
    for path in _view_files(view):
        for module, name, line in _locedit_imports(path):
            found.append((module, name, line))
            target = f"{module}.{name}" if module == "locedit" and name else module  # `from locedit import lens`
            inside = target == f"locedit.{view}" or target.startswith(f"locedit.{view}.")  # a package's own parts
            if target not in allowed and not inside:
                bad.append(f"{path.relative_to(LIB)}:{line} imports {target}")
    assert not bad, "views may import only " + ", ".join(sorted(allowed)) + ":\n" + "\n".join(bad)
    assert any(module == "locedit.models" for module, _, _ in found)  # the check does see the imports


def test_the_private_import_check_covers_the_whole_library():
    assert len(NO_PRIVATE_IMPORTS) > 30
    assert {"viz/heatmaps.py", "editing/memit.py", "editing/rome.py", "patching/engine.py", "data/__init__.py"} <= set(
        NO_PRIVATE_IMPORTS
    )


@pytest.mark.parametrize("file", NO_PRIVATE_IMPORTS)
def test_no_private_name_imported_from_another_module(file):
    bad = [
        f"{file}:{line} imports {name} from {module}"
        for module, name, line in _locedit_imports(LIB / file)
        if name is not None and name.startswith("_")
    ]
    assert not bad, "import public names only (make the name public where it is defined):\n" + "\n".join(bad)


def test_the_private_import_check_sees_one(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from locedit.neurons import _strs, token_ids\n    import locedit.lens\n")
    assert _locedit_imports(path) == [("locedit.neurons", "_strs", 2), ("locedit.neurons", "token_ids", 2),
                                      ("locedit.lens", None, 3)]  # fmt: skip


def _library_map() -> dict[str, tuple[str, set[str]]]:
    """The map in ``locedit/__init__.py``'s docstring: top-level module → (section, the modules it lists)."""
    doc = ast.get_docstring(ast.parse((LIB / "__init__.py").read_text()))
    entries: dict[str, tuple[str, set[str]]] = {}
    section, current = "", None
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Map of the library"))
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            section = line.split()[0]
            continue
        words = line.split()
        if not words:
            continue
        if line.startswith("    ") and not line.startswith("     "):
            current = words[0].rstrip("/")
            entries[current] = (section, set())
        if current and line.rstrip().endswith(")") and "(" in line:
            listed = line.rstrip()[line.rindex("(") + 1 : -1]
            entries[current][1].update(name.strip().split(".")[0] for name in listed.split(","))
    return entries


def _top(module: str) -> str:
    """``locedit.editing.edit`` → ``editing``; ``from locedit import files`` is handled by the caller."""
    return module.split(".")[1] if module.count(".") else module


def test_the_library_map_names_every_module_and_its_imports():
    entries = _library_map()
    tops = {p.stem if p.parent == LIB else p.relative_to(LIB).parts[0] for p in LIB.rglob("*.py")} - {"__init__"}
    assert tops == set(entries), f"modules missing from the map: {tops - set(entries)}; stale: {set(entries) - tops}"
    foundations = {name for name, (section, _) in entries.items() if section == "Foundations"}
    bad = []
    for path in LIB.rglob("*.py"):
        if path == LIB / "__init__.py":
            continue
        top = path.stem if path.parent == LIB else path.relative_to(LIB).parts[0]
        section, listed = entries[top]
        allowed = listed | {top}
        if section == "Methods":
            allowed |= foundations
        elif section == "Views":
            allowed |= {"models", "arch"}
        for module, name, line in _locedit_imports(path):
            target = name if module == "locedit" else _top(module)
            if target not in allowed:
                bad.append(f"{path.relative_to(LIB)}:{line} imports {target} (the map allows {sorted(allowed)})")
    assert not bad, "imports the map in locedit/__init__.py does not allow:\n" + "\n".join(bad)

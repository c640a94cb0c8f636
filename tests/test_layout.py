"""The layout the README describes: library modules that import each other in one direction only,
no facade, no sys.path edits, short functions and classes, and one options object for writing."""

import ast
from pathlib import Path

import pytest

from conftest import ROOT

LIBRARY = sorted([*ROOT.glob("lmkit/*.py"), *ROOT.glob("pilish/*.py")])
SCRIPTS = [ROOT / name for name in ("train_tokenizer.py", "train_model.py", "generate.py", "pilish_generate.py")]
PACKAGES = ("lmkit", "pilish")
LONGEST_FUNCTION, LONGEST_CLASS = 60, 120


def module_name(path):
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(path):
    """The project's library modules that `path` imports anywhere (at the top or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from lmkit import training` imports the module lmkit.training
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in PACKAGES}
    known = {module_name(p) for p in LIBRARY}
    return {name for name in found if name in known and name not in PACKAGES}


def find_cycle(graph):
    """A list of modules that import each other in a circle, or None."""
    done, active = set(), []

    def visit(module):
        if module in active:
            return active[active.index(module):] + [module]
        if module in done:
            return None
        active.append(module)
        for imported in sorted(graph.get(module, ())):
            if cycle := visit(imported):
                return cycle
        active.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if cycle := visit(module):
            return cycle
    return None


def test_library_modules_import_each_other_without_a_cycle():
    graph = {module_name(path): imported_modules(path) for path in LIBRARY}
    assert "pilish.rules" in graph["pilish.writing"]  # the walk found the library's imports
    assert find_cycle(graph) is None


def test_the_cycle_check_sees_a_cycle_through_a_local_import(tmp_path, monkeypatch):
    """The old layout's circle: pilish imported pilish_engine inside a function, and the engine pilish."""
    package = tmp_path / "pilish"
    package.mkdir()
    (package / "a.py").write_text("from pilish.b import x\n")
    (package / "b.py").write_text("def f():\n    from pilish import a\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "LIBRARY", sorted(package.glob("*.py")))
    graph = {module_name(path): imported_modules(path) for path in sorted(package.glob("*.py"))}
    assert graph == {"pilish.a": {"pilish.b"}, "pilish.b": {"pilish.a"}}
    assert find_cycle(graph) == ["pilish.a", "pilish.b", "pilish.a"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def python_files():
    return [path for path in ROOT.rglob("*.py")
            if not any(part.startswith(".") or part in ("__pycache__",) for part in path.relative_to(ROOT).parts)]


def test_no_module_level_getattr_and_no_sys_path_edits():
    offenders = []
    for path in python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [f"{path.relative_to(ROOT)}: module __getattr__" for node in tree.body
                      if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"]
        if path.name != "conftest.py":
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}: sys.path edit" for node in ast.walk(tree)
                          if isinstance(node, ast.Attribute) and node.attr == "path"
                          and isinstance(node.value, ast.Name) and node.value.id == "sys"]
    assert not offenders


def long_definitions(path):
    """(name, lines) of the functions over LONGEST_FUNCTION lines and classes over LONGEST_CLASS."""
    too_long = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            lines = node.end_lineno - node.lineno + 1
            limit = LONGEST_CLASS if isinstance(node, ast.ClassDef) else LONGEST_FUNCTION
            if lines > limit:
                too_long.append((f"{path.relative_to(ROOT)}:{node.name}", lines))
    return too_long


@pytest.mark.parametrize("path", LIBRARY, ids=lambda path: module_name(path))
def test_library_functions_and_classes_are_short(path):
    assert long_definitions(path) == []


def test_the_length_check_counts_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    long_one = tmp_path / "long.py"
    long_one.write_text("def f():\n" + "    x = 1\n" * LONGEST_FUNCTION + "def g():\n    pass\n")
    assert long_definitions(long_one) == [("long.py:f", LONGEST_FUNCTION + 1)]


def test_the_scripts_import_no_facade_and_the_library_no_script():
    script_names = {path.stem for path in SCRIPTS}
    for path in LIBRARY:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & (script_names | {"common", "pilish_engine", "fluency"}), path


def test_write_options_are_the_pilish_settings():
    """One options object: a field for every writing setting of pilish_generate.py, with its default."""
    from dataclasses import fields

    import pilish_generate
    from lmkit.settings import configure
    from pilish.writing import WriteOptions
    settings = configure(vars(pilish_generate), [])
    assert WriteOptions.from_settings(settings) == WriteOptions()
    for item in fields(WriteOptions):
        assert item.name.upper() in vars(settings), item.name
    changed = WriteOptions.from_settings(configure(vars(pilish_generate), ["--num_beams=3", "--decoding=sample"]))
    assert (changed.num_beams, changed.decoding) == (3, "sample")

"""The import contract: the package's modules import each other without a circle.

The graph counts every ``import`` statement of ``imgasdata`` that names a module of
``imgasdata`` — at module level and inside functions alike — because an import
tucked into a function still ties the two modules together (it only hides the
circle until the function runs). A circle here fails the test with the modules
that form it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "imgasdata"


def module_name(path, root):
    """``imgasdata.prepare.dedup`` for ``<root>/imgasdata/prepare/dedup.py`` (``__init__`` is its package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module, node, is_package, modules):
    """The modules of ``modules`` that an ``import``/``from ... import`` node inside ``module`` names.

    The package ``__init__`` that Python runs on the way to a submodule is not counted:
    every submodule would otherwise import its own package and seem to close a circle.
    """
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    # "from . import runs" names the module imgasdata.runs; "from .runs import load_run" names imgasdata.runs
    return [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem for alias in node.names]


def import_graph(root):
    """``{module: set of modules of the same package it imports}`` for the package folder ``root``."""
    root = Path(root)
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in _resolve(module, node, path.name == "__init__.py", files):
                    if name in files and name != module:
                        targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph):
    """One import circle as a list ``[a, b, ..., a]``, or ``None`` when the graph has none."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert "imgasdata.train" in graph and "imgasdata.runs" in graph["imgasdata.train"]  # the graph is real
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def _package(tmp_path, files):
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cycle_finder_sees_a_circle_through_a_function_level_import(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "b.py": "def thing():\n    from . import c\n",
        "sub/__init__.py": "",
        "c.py": "import pkg.sub\nfrom pkg.sub.d import x\n",
        "sub/d.py": "from ..a import y\n",
    })
    graph = import_graph(root)
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.sub.d"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d", "pkg.a"]


def test_cycle_finder_passes_a_tree(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\nfrom . import c\n",
        "b.py": "def thing():\n    from . import c\n",
        "c.py": "import os\nimport pkg\n",
    })
    graph = import_graph(root)
    assert graph["pkg.a"] == {"pkg.b", "pkg.c"}
    assert graph["pkg.c"] == {"pkg"}  # "import pkg" runs the package's __init__
    assert find_cycle(graph) is None


@pytest.mark.parametrize("shim", ["models", "train"])
def test_no_module_getattr_shims(shim):
    tree = ast.parse((PACKAGE / f"{shim}.py").read_text())
    assert not [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]


# ----------------------------------------------------------------------------- what a command imports


def _imported_after(code):
    """The top-level packages a fresh Python has imported after running ``code``."""
    import json
    import subprocess
    import sys

    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=PACKAGE.parent, env={**__import__("os").environ, "PYTHONPATH": str(PACKAGE.parent)})
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_help_imports_no_heavy_library():
    """``imgasdata --help`` builds every command's options without torch, boto3, Ray or scikit-learn."""
    code = ("import contextlib, io\nfrom imgasdata.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])")
    heavy = _imported_after(code) & {"torch", "torchvision", "timm", "boto3", "botocore", "ray", "sklearn",
                                     "matplotlib", "scipy"}
    assert not heavy, f"imgasdata --help imports {sorted(heavy)}"


def test_predict_imports_no_training_or_cloud_library():
    """Labelling images needs torch and torchvision, not scikit-learn, matplotlib, timm (until a backbone is built), boto3 or Ray."""
    heavy = _imported_after("import imgasdata.predict") & {"sklearn", "matplotlib", "scipy", "timm", "boto3",
                                                           "botocore", "ray"}
    assert not heavy, f"import imgasdata.predict imports {sorted(heavy)}"

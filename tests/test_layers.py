"""The layers: signals ← train ← eval ← scripts (the pipeline). No module imports a layer above it.

Every import statement is read with `ast`, including imports inside functions (the
lazy ones count: they run). `__main__` modules are entry points: they sit at the top
and may use the pipeline's stage chain (`python -m train` runs it).
"""

from __future__ import annotations

import ast

from tests.conftest import ROOT

LAYERS = ["signals", "train", "eval", "serve", "scripts"]      # lowest first


def imports(path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def back_edges(root=ROOT) -> list[str]:
    found = []
    for layer, package in enumerate(LAYERS):
        for path in sorted((root / package).rglob("*.py")):
            if path.name == "__main__.py":
                continue
            for line, target in imports(path):
                if target in LAYERS and LAYERS.index(target) > layer:
                    found.append(f"{path.relative_to(root)}:{line} imports {target} (a layer above {package})")
    return found


def test_no_module_imports_a_layer_above_it():
    assert back_edges() == [], "\n".join(back_edges())


def test_the_check_finds_a_back_edge(tmp_path):
    for package in LAYERS:
        (tmp_path / package).mkdir()
    (tmp_path / "signals" / "bad.py").write_text("def f():\n    from eval.harness import evaluate\n")
    (tmp_path / "eval" / "ok.py").write_text("import signals.store\nfrom train import models\n")
    (tmp_path / "train" / "__main__.py").write_text("from scripts import stages\n")    # entry point: allowed
    assert back_edges(tmp_path) == ["signals/bad.py:2 imports eval (a layer above signals)"]

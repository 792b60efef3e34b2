"""The package's layers import one way: sampling and inspecting never load the trainer,
no two modules import each other, and the command line starts without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "glassbox"


def loaded_modules(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `statement`."""
    code = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "module", ["glassbox.runs", "glassbox.generate", "glassbox.analysis", "glassbox.evaluate"]
)
def test_loading_and_reading_runs_does_not_import_the_trainer(module):
    modules = loaded_modules(f"import {module}")
    assert "glassbox.train.trainer" not in modules
    if module != "glassbox.evaluate":  # eval scores with the objectives' loss
        assert not any(m.startswith("glassbox.train") for m in modules)


def test_the_command_line_starts_without_torch():
    modules = loaded_modules("import glassbox.cli; glassbox.cli.build_parser()")
    assert "torch" not in modules
    assert "glassbox.commands.train" in modules  # every command's parser was built


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The package modules that `module` imports at its top level (imports inside
    functions run late and cannot make a cycle at import time)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            # importing a.b.c also runs the __init__ of every package above it
            for k in range(2, len(parts) + 1):
                prefix = ".".join(parts[:k])
                inside = module == prefix or module.startswith(prefix + ".")
                if prefix in modules and not inside:
                    found.add(prefix)
    return found


def test_no_import_cycles():
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    graph = {m: _imports(p, m, set(files)) for m, p in files.items()}

    def reaches(start: str, goal: str) -> list[str] | None:
        stack, seen = [[start]], {start}
        while stack:
            path = stack.pop()
            for nxt in sorted(graph[path[-1]]):
                if nxt == goal:
                    return path + [nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(path + [nxt])
        return None

    cycles = [reaches(m, m) for m in sorted(graph)]
    assert [c for c in cycles if c] == []

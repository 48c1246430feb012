"""docs/architecture.md's module map names every module under plugin/ and agent/, and only those (a package's
``__init__.py`` counts where it holds more than a docstring)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def holds_code(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
               and not (isinstance(n, ast.ImportFrom) and n.module == "__future__") for n in body)


def test_the_module_map_matches_the_tree():
    section = (ROOT / "docs" / "architecture.md").read_text().split("## Module map", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([\w/]+\.py)` \|", section, re.M)
    tree = {str(p.relative_to(base)) for base in (ROOT / "plugin", ROOT / "agent") for p in base.rglob("*.py")
            if p.name != "__init__.py" or holds_code(p)}
    assert len(listed) == len(set(listed))
    assert {"missing from the map": sorted(tree - set(listed)), "not in the tree": sorted(set(listed) - tree)} == {
        "missing from the map": [], "not in the tree": []}

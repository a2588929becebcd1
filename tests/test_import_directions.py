"""Imports point one way: config → training → evaluation → retrieval → modeling → ops; config,
training and evaluation may use data; data uses no other layer; only config imports gin."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "generative_recommenders"
SHARED = {"errors", "logs", "atomic", "registry", "imports"}  # leaf modules every layer may use
ALLOWED = {
    "ops": {"ops"},
    "modeling": {"modeling", "ops"},
    "retrieval": {"retrieval", "modeling", "ops"},
    "evaluation": {"evaluation", "retrieval", "modeling", "ops", "data"},
    "training": {"training", "evaluation", "retrieval", "modeling", "ops", "data"},
    "data": {"data"},
    "config": {"config", "training", "evaluation", "retrieval", "modeling", "ops", "data"},
    "search": {
        "search",
        "config",
        "training",
        "evaluation",
        "retrieval",
        "modeling",
        "ops",
        "data",
    },
    "recommend": {
        "recommend",
        "config",
        "training",
        "evaluation",
        "retrieval",
        "modeling",
        "ops",
        "data",
    },
}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _violations() -> list[str]:
    found = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for name in _imported_modules(path):
                if name == "gin" or name.startswith("gin."):
                    if layer != "config":
                        found.append(f"{path.relative_to(PACKAGE)} imports gin")
                    continue
                parts = name.split(".")
                if parts[0] != "generative_recommenders" or len(parts) < 2:
                    continue
                if parts[1] not in allowed | SHARED and parts[1] != "__init__":
                    found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return found


def test_layers_import_only_downwards() -> None:
    assert _violations() == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from generative_recommenders.training import trainer\nimport gin\n")
    assert _imported_modules(module) == {"generative_recommenders.training", "gin"}

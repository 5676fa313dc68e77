"""The layer contracts of ``pyproject.toml`` hold, and a planted violation breaks them."""

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("lint_imports", ROOT / "scripts" / "lint_imports.py")
lint_imports = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lint_imports)


@pytest.fixture
def tree(tmp_path):
    return lint_imports.package_tree(tmp_path / "site")


def test_the_package_keeps_its_layers(tree):
    result = lint_imports.lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    for layer in ("scene", "render", "memory", "dynamics", "imagination", "evaluation", "planning", "sim", "jobs"):
        assert any((tree / "splatworld" / layer).glob("*.py")), layer  # no layer is linted empty


@pytest.mark.parametrize("module, imports, edge, contract", [
    ("scene/planted.py", "import splatworld.memory", "splatworld.memory", "layers:"),
    ("dynamics/planted.py", "from splatworld.sim import tabletop_world", "splatworld.sim", "the simulator is a data source"),
    ("memory/planted.py", "from omegaconf import DictConfig", "omegaconf", "library layers never import"),
])
def test_a_planted_violation_breaks_its_contract(tree, module, imports, edge, contract):
    (tree / "splatworld" / module).write_text(imports + "\n")
    result = lint_imports.lint(tree)
    assert result.returncode != 0
    assert "Contracts: 3 kept, 1 broken." in result.stdout
    broken = result.stdout[result.stdout.index("Broken contracts"):]
    planted = "splatworld." + module.removesuffix(".py").replace("/", ".")
    assert contract in broken and f"{planted} -> {edge}" in broken


def test_a_layer_without_modules_fails(tree):
    shutil.rmtree(tree / "splatworld" / "planning")
    result = lint_imports.lint(tree)
    assert result.returncode != 0 and "splatworld.planning" in result.stderr

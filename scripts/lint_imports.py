"""Check the layer contracts of ``[tool.importlinter]`` in ``pyproject.toml`` with import-linter.

    python scripts/lint_imports.py

An editable install hides the folders that ``package-dir`` maps into ``splatworld.*`` from
import-linter's graph (it sees ``splatworld.cli`` but no ``splatworld.scene``), so the package
is laid out here as a wheel would install it, in a scratch directory, and linted there. A layer
with no modules in that tree fails the check too: a contract over nothing passes vacuously.
Exits with lint-imports' status (non-zero on a broken contract).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_tree(dest: Path, root: Path = ROOT) -> Path:
    """Copy every package of ``root``'s ``pyproject.toml`` to ``dest`` as installed (``package-dir``
    applied; Python files only). Returns ``dest``."""
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setup["package-dir"]
    for package in setup["packages"]:
        top = next(name for name in sorted(mapping, key=len, reverse=True)
                   if package == name or package.startswith(name + "."))
        source = root / mapping[top] / Path(*package[len(top):].split(".")[1:])
        target = dest / Path(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for file in source.glob("*.py"):
            shutil.copy2(file, target / file.name)
    return dest


def layer_modules(root: Path = ROOT) -> list[str]:
    """Every module named in a layers contract (``a | b`` split into ``a`` and ``b``)."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]
    return [name.strip() for contract in config["contracts"] if contract["type"] == "layers"
            for layer in contract["layers"] for name in layer.replace(":", "|").split("|")]


def lint(tree: Path, root: Path = ROOT) -> subprocess.CompletedProcess:
    """Run lint-imports with ``root``'s configuration over the package laid out in ``tree``."""
    missing = [m for m in layer_modules(root)
               if not (tree / Path(*m.split("."))).is_dir() and not (tree / (Path(*m.split(".")).as_posix() + ".py")).is_file()]
    if missing:
        return subprocess.CompletedProcess([], 1, "", f"layers with no modules in the package: {', '.join(missing)}\n")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(command), str(root / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True)


def main() -> int:
    """Lint; print the one summary line when every contract holds, everything when one breaks."""
    with tempfile.TemporaryDirectory() as scratch:
        result = lint(package_tree(Path(scratch)))
    if result.returncode == 0:
        summary = next(line for line in result.stdout.splitlines() if line.startswith("Contracts:"))
        print(f"lint-imports: {summary}")
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())

"""Atomic file writes: a file appears under its name complete, or not at all (a killed run never
leaves a truncated file where a complete one was). Outside the layers: any module may use it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], keep_extension: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it over ``path``. Creates
    the parent directory. The sibling is ``NAME.tmp``, or with ``keep_extension`` ``STEM.tmp.EXT``
    for writers that pick the format by extension (``torch.save`` names its archive's records after
    the file, so a ``.pt`` keeps the plain name to be written the same bytes as directly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}" if keep_extension else f"{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))

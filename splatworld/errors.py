"""Typed errors raised at the project's public boundaries.

Every error names what was wrong (the file, frame, key or tensor shape) so a
user can fix the input without reading a traceback from deep inside numpy.
"""

from __future__ import annotations


class SplatworldError(Exception):
    """Base class of every error this package raises on purpose."""


class ShapeError(SplatworldError, ValueError):
    """A tensor has the wrong shape or dtype."""


class PlyFormatError(SplatworldError, ValueError):
    """A PLY file is unreadable or lacks properties of the 3DGS layout."""


class BackendUnavailableError(SplatworldError, RuntimeError):
    """A renderer backend was requested explicitly but cannot run here."""


class ConfigError(SplatworldError, ValueError):
    """A config key or value is unknown or invalid."""


def check_shape(name: str, tensor, shape: tuple) -> None:
    """Raise :class:`ShapeError` unless ``tensor.shape`` matches ``shape``.

    ``shape`` holds ints for fixed sizes and ``None`` for any size; a leading
    ``...`` matches any number of batch dimensions.

    >>> import torch
    >>> check_shape("means", torch.zeros(5, 3), (None, 3))
    >>> check_shape("means", torch.zeros(5, 2), (None, 3))
    Traceback (most recent call last):
    ...
    splatworld.errors.ShapeError: means: expected shape [*, 3], got [5, 2]
    """
    actual = tuple(tensor.shape)
    pattern = tuple(shape)
    if pattern and pattern[0] is Ellipsis:
        pattern = pattern[1:]
        ok = len(actual) >= len(pattern)
        tail = actual[len(actual) - len(pattern):] if ok else ()
    else:
        ok = len(actual) == len(pattern)
        tail = actual
    ok = ok and all(p is None or p == a for p, a in zip(pattern, tail))
    if not ok:
        shown = ", ".join("*" if p is None else "..." if p is Ellipsis else str(p) for p in shape)
        raise ShapeError(f"{name}: expected shape [{shown}], got {list(actual)}")


class EpisodeFormatError(SplatworldError, ValueError):
    """An episode directory breaks the episode format (names the file, frame and key)."""

    def __init__(self, file, message: str, *, frame: int | None = None, key: str | None = None):
        where = [str(file)]
        if frame is not None:
            where.append(f"frame {frame}")
        if key is not None:
            where.append(f"key '{key}'")
        super().__init__(f"{': '.join(where)}: {message}")
        self.file, self.frame, self.key = file, frame, key


def lookup(registry, name: str, what: str):
    """``registry[name]`` for a mapping (``name`` itself for a sequence of names): the one way a
    name is looked up in a registry (backends, models, planners, policies, protocols, ...).

    Raises:
        ConfigError: ``unknown {what} 'name'; valid: 'a', 'b', ...``.

    Example:
        >>> lookup({"cem": 1, "mppi": 2}, "mppi", "planner")
        2
    """
    if name not in registry:
        raise ConfigError(f"unknown {what} {name!r}; valid: {', '.join(repr(k) for k in registry)}")
    return registry[name] if hasattr(registry, "keys") else name


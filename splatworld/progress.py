"""Progress bars that suit where the output goes. Outside the layers: any module may use it."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar, redrawn at most every 0.1 s on a terminal and every 30 s otherwise (a log or a
    CI run gets a line every half minute, not hundreds per second). ``kwargs`` go to tqdm."""
    kwargs.setdefault("mininterval", 0.1 if sys.stderr.isatty() else 30.0)
    return tqdm(iterable, **kwargs)

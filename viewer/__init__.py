"""The memory in a browser (viser): the scaffold, the objects and their tracks over time, the camera
path and images, ground truth and the imagined future beside them. :func:`read_inputs` reads a
memory and its episodes into a :class:`Timeline`; :class:`MemoryViewer` draws it on a viser server."""

from splatworld.viewer.app import MemoryViewer, ViewerConfig, splat_arrays
from splatworld.viewer.timeline import STATE_COLORS, ObjectTimeline, Timeline, TruthObject, read_inputs

__all__ = ["MemoryViewer", "ObjectTimeline", "STATE_COLORS", "Timeline", "TruthObject", "ViewerConfig", "read_inputs",
           "splat_arrays"]

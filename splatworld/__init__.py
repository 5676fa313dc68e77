"""splatworld: a 3D-grounded persistent scene world model.

Sub-packages, each a top-level folder of the repository, in layers (a layer imports only those
below it; ``pyproject.toml``'s ``[tool.importlinter]`` contracts enforce it):

- :mod:`splatworld.scene`: data without time: Gaussians, cameras, poses, PLY, the episode format.
- :mod:`splatworld.render`: rasterizer backends, camera paths, video.
- :mod:`splatworld.memory`: the persistent scene memory (static map, objects, tracks over time).
- :mod:`splatworld.dynamics`: action-conditioned object dynamics, rollouts, training pieces.
- :mod:`splatworld.imagination`: the world model (memory + dynamics + renderer).
- :mod:`splatworld.evaluation` and :mod:`splatworld.planning`: permanence metrics and baselines;
  planning on the memory.
- :mod:`splatworld.jobs`: the command-line jobs (hydra configs from :mod:`splatworld.configs`).
- :mod:`splatworld.sim`: the PyBullet ground-truth world, a data source for jobs, tests and benchmarks.

Conventions, followed everywhere: world z-up, metres; quaternions ``[w, x, y, z]``;
cameras are OpenCV world-to-camera inside the code and nerfstudio / OpenGL
camera-to-world on disk.
"""

__version__ = "0.1.0"

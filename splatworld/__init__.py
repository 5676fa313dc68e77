"""splatworld: a 3D-grounded persistent scene world model.

Sub-packages (each a top-level folder of the repository):

- :mod:`splatworld.scene`: data without time: Gaussians, cameras, PLY, builders.
- :mod:`splatworld.memory`: the persistent scene memory (tracks over time).
- :mod:`splatworld.dynamics`: action-conditioned object dynamics.
- :mod:`splatworld.render`: rasterizer backends, camera paths, video.
- :mod:`splatworld.sim`: the PyBullet ground-truth world.
- :mod:`splatworld.configs`: hydra configs shipped with the package.

Conventions, followed everywhere: world z-up, metres; quaternions ``[w, x, y, z]``;
cameras are OpenCV world-to-camera inside the code and nerfstudio / OpenGL
camera-to-world on disk.
"""

__version__ = "0.1.0"

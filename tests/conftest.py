import pytest
import torch

from splatworld.scene import Camera, Gaussians, look_at


def random_gaussians(n: int, seed: int, *, extent: float = 0.5, sh_degree: int = 0, n_objects: int = 3,
                     dtype=torch.float32) -> Gaussians:
    """Gaussians scattered in a cube around the origin, with mixed sizes, opacities and ids."""
    gen = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2
    return Gaussians(
        means=(torch.rand(n, 3, generator=gen, dtype=dtype) * 2 - 1) * extent,
        quats=torch.randn(n, 4, generator=gen, dtype=dtype),
        log_scales=torch.empty(n, 3, dtype=dtype).uniform_(-4.5, -2.5, generator=gen),
        opacity_logits=torch.randn(n, generator=gen, dtype=dtype) * 2 + 1,
        sh=torch.randn(n, k, 3, generator=gen, dtype=dtype) * 0.5,
        object_ids=torch.randint(0, n_objects + 1, (n,), generator=gen),
    )


@pytest.fixture
def camera() -> Camera:
    return Camera.from_fov(60.0, 64, 48, look_at([1.2, -1.0, 0.8], [0.0, 0.0, 0.0]))


@pytest.fixture
def make_gaussians():
    """The :func:`random_gaussians` factory, for tests."""
    return random_gaussians


def pytest_runtest_setup(item):
    """``@pytest.mark.gpu`` tests run where CUDA works and skip, saying why, where it does not."""
    if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        pytest.skip(f"needs CUDA: torch {torch.__version__} ({build}) sees no GPU")

"""``splatworld generate``: a PyBullet episode from a scenario config (:func:`generate_episode`),
and the shared cache of generated episodes that benchmarks and training read."""

from __future__ import annotations

from pathlib import Path

from splatworld.jobs.config import load_config
from splatworld.sim.generate import generate_episode


def generated_episode(folder: Path, scenario: str, seed: int, seconds: float | None = None,
                      progress: bool = True, extra: tuple[str, ...] = ()) -> Path:
    """``folder/<scenario>_seed<seed>`` (``_<extra>`` appended: further ``generate`` overrides such as
    ``sensor=kinect``), generated first unless a finished episode is there (benchmarks and training
    share episodes this way; one written before the generator drew counterfactual frames is
    generated again)."""
    path = Path(folder) / "_".join([f"{scenario}_seed{seed}", *(e.replace("=", "-") for e in extra)])
    truth = path / "ground_truth.json"
    if not (path / "transforms.json").exists() or not truth.exists() or '"events"' not in truth.read_text():
        overrides = [f"scenario={scenario}", f"seed={seed}", f"out={path}", f"progress={str(progress).lower()}",
                     *extra]
        generate_episode(load_config("generate", overrides + ([f"seconds={seconds}"] if seconds is not None else [])))
    return path


def scenario_names() -> list[str]:
    from importlib.resources import files

    return sorted(p.name[:-5] for p in files("splatworld.configs").joinpath("scenario").iterdir()
                  if p.name.endswith(".yaml"))

"""The README and docs/ say what runs: their commands compose, their paths exist, the quick start runs."""

import re
from pathlib import Path

import pytest
import torch

from splatworld.jobs.config import load_config

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _bash_lines():
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.splitlines():
                command = line.split("#", 1)[0].strip()
                if command:
                    yield page.name, command


def test_readme_is_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme, page.name
    assert (ROOT / "docs" / "side_by_side.png").stat().st_size > 10_000


@pytest.mark.parametrize("page, command", list(_bash_lines()))
def test_documented_commands_compose(page, command):
    """Every ``splatworld`` line composes its packaged config with exactly those overrides (an
    unknown key or scenario raises); every script it names exists."""
    from splatworld.cli import COMMANDS

    words = command.split()
    if words[0].endswith("splatworld"):
        name, overrides = words[1], words[2:]
        if overrides and f"{name} {overrides[0]}" in COMMANDS:  # a sub-command: `benchmark export ...`
            name, overrides = f"{name} {overrides[0]}", overrides[1:]
        load_config(COMMANDS[name][0], overrides)
    elif words[0] in ("bash", "python"):
        assert (ROOT / words[1]).is_file(), words[1]
    elif words[0].endswith("torchrun"):
        module = words[words.index("-m") + 1]
        assert (ROOT / "jobs" / (module.rsplit(".", 1)[1] + ".py")).is_file(), module
    else:
        pytest.fail(f"{page}: a command this test does not know how to check: {command}")


def test_documented_scripts_exist():
    for page in PAGES:
        for script in re.findall(r"(?:python|bash) ((?:benchmarks|scripts|examples)/[\w/]+\.(?:py|sh))", page.read_text()):
            assert (ROOT / script).is_file(), (page.name, script)


def test_readme_quick_start_runs(tmp_path, monkeypatch):
    """The quick start, as written, on a short episode where the demo would have put its own."""
    from splatworld.sim.generate import generate_episode

    (block,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    episode = tmp_path / "demo_out" / "episode" / "long_seed0"
    generate_episode(load_config("generate", [f"out={episode}", "scenario=occlusion", "seconds=4", "seed=1",
                                              "width=64", "height=64", "progress=false"]))
    monkeypatch.chdir(tmp_path)
    printed = []
    exec(compile(block, "README.md", "exec"), {"print": lambda *a: printed.append(a)})
    assert [p[0] for p in printed] == list(range(30, 40))
    assert all(p[1] == (64, 64, 3) and p[2] for p in printed)


def test_examples_run(tmp_path):
    """The two examples the README points to, as a user runs them."""
    import subprocess
    import sys

    from splatworld.scene import Gaussians, write_ply

    g = Gaussians.from_points(torch.rand(500, 3, generator=torch.Generator().manual_seed(0)) - 0.5,
                              torch.rand(500, 3, generator=torch.Generator().manual_seed(1)), scale=0.02)
    write_ply(tmp_path / "scene.ply", g)
    subprocess.run([sys.executable, str(ROOT / "examples" / "render_your_ply.py"), str(tmp_path / "scene.ply"),
                    str(tmp_path / "orbit.mp4"), "--frames", "4", "--backend", "cpu"], check=True, capture_output=True)
    assert (tmp_path / "orbit.mp4").stat().st_size > 1000
    planned = subprocess.run([sys.executable, str(ROOT / "examples" / "own_planner.py")], check=True,
                             capture_output=True, text=True)
    assert "best of 512 sequences" in planned.stdout


def test_outside_model_example_takes_part_in_the_benchmark(tmp_path):
    """docs/benchmark.md's worked example: last_frame written as mp4s by examples/last_frame_mp4.py
    from a suite's task folders alone, then scored."""
    import subprocess
    import sys

    from splatworld.evaluation.evaluate import EvaluationConfig
    from splatworld.evaluation.suite import export_suite, score_suite
    from splatworld.sim.generate import generate_episode

    episode = generate_episode(load_config("generate", [f"out={tmp_path / 'ep'}", "scenario=occlusion", "seconds=20",
                                                        "seed=0", "width=96", "height=96", "progress=false"]))
    export_suite({"small": episode}, tmp_path / "suite", observe_seconds=5, progress=False)
    subprocess.run([sys.executable, str(ROOT / "examples" / "last_frame_mp4.py"), str(tmp_path / "suite"),
                    str(tmp_path / "predictions")], check=True, capture_output=True)
    assert len(list((tmp_path / "predictions" / "last_frame").glob("*.mp4"))) == 2
    board = score_suite(tmp_path / "suite", tmp_path / "predictions", tmp_path / "board",
                        EvaluationConfig(workers=1, progress=False))
    imagination, returns = board["last_frame"]["imagination"], board["last_frame"]["return"]
    assert imagination["tasks"] == returns["tasks"] == 1
    assert returns["permanence"]["events"] == 4 and returns["permanence"]["opr_all"] is None  # RGB alone
    assert returns["permanence"]["opr_rgb_all"] is not None


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_benchmarks_start(script):
    """Every benchmark imports what it uses and parses its arguments (a moved module breaks this first)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout

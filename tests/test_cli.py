import os
import subprocess
import sys
import zipfile
from pathlib import Path

import imageio.v2 as imageio
import pytest
from hydra import compose, initialize_config_module

from splatworld.cli import main
from splatworld.jobs.config import load_config
from splatworld.errors import ConfigError
from splatworld.scene import read_ply

REPO = Path(__file__).resolve().parents[1]


def test_config_composes_with_overrides():
    with initialize_config_module(config_module="splatworld.configs", version_base=None):
        cfg = compose(config_name="orbit", overrides=["frames=7", "backend=torch"])
    assert cfg.frames == 7 and cfg.backend == "torch" and cfg.width == 256


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"framez.*valid keys:.*frames"):
        load_config("orbit", ["framez=3"])


def test_a_scenario_name_overrides_a_plain_key_and_chooses_a_group():
    """``scenario=`` names the episodes of train/eval-dynamics (a plain key) and chooses the
    generator's scenario (a config group): both through the same override."""
    cfg = load_config("train_dynamics", ["scenario=push_mix", "train_seeds=[1, 2]"])
    assert cfg.scenario == "push_mix" and list(cfg.train_seeds) == [1, 2]
    assert load_config("eval_dynamics", ["scenario=push"]).scenario == "push"
    assert load_config("generate", ["scenario=occlusion"]).scenario.name == "occlusion"
    with pytest.raises(ConfigError, match="scenarioz"):
        load_config("train_dynamics", ["scenarioz=push_mix"])


def test_orbit_end_to_end(tmp_path, capsys):
    code = main(["orbit", f"out={tmp_path}", "frames=4", "n_gaussians=4000", "width=64", "height=48",
                 "n_objects=2"])
    assert code == 0
    frames = [f for f in imageio.get_reader(tmp_path / "orbit.mp4")]
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
    assert len(read_ply(tmp_path / "scene.ply")) == 4000
    assert "frames/s" in capsys.readouterr().out


def test_cli_errors(capsys):
    assert main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err
    assert main(["orbit", "backend=opengl"]) == 2
    assert "unknown renderer backend 'opengl'" in capsys.readouterr().err


def test_wheel_maps_folders_into_one_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True)
    (wheel,) = tmp_path.glob("splatworld-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"splatworld"}
    for needed in ("splatworld/configs/demo.yaml", "splatworld/configs/imagine.yaml", "splatworld/jobs/imagine.py",
                   "splatworld/imagination/world_model.py", "splatworld/sim/generate.py", "splatworld/planning/planners.py",
                   "splatworld/evaluation/poses.py", "splatworld/scene/gaussians.py", "splatworld/render/api.py",
                   "splatworld/memory/__init__.py", "splatworld/dynamics/__init__.py", "splatworld/cli.py",
                   "splatworld/dynamics/checkpoints/default.pt", "splatworld/configs/train_dynamics.yaml"):
        assert needed in names


def test_no_bare_top_level_modules():
    folders = ("scene", "render", "memory", "dynamics", "imagination", "evaluation", "planning", "sim", "jobs", "configs")
    code = f"import importlib.util as u; print([n for n in {folders!r} if u.find_spec(n)])"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_main_demo_end_to_end(tmp_path, capsys):
    code = main(["demo", f"out={tmp_path}", "preset=occlusion", "observe_seconds=2", "imagine_seconds=2",
                 "backend=cpu", "progress=false"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "real time" in printed and "PSNR per imagined minute" in printed
    imagined = tmp_path / "imagined"
    assert len(imageio.mimread(imagined / "side_by_side.mp4")) == 20
    assert imageio.imread(imagined / "rgb" / "000000.png").shape == (256, 256, 3)


def test_benchmark_names_an_unknown_protocol_before_any_work(tmp_path, capsys):
    assert load_config("benchmark", []).protocols == ["imagination", "return"]
    assert main(["benchmark", f"out={tmp_path}", "protocols=[next_frame]"]) == 2
    assert "unknown protocol 'next_frame'; valid: ['imagination', 'return'] (next_frame is a mode of " \
        "`splatworld imagine`" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    assert main(["benchmark", "score", f"out={tmp_path}"]) == 2
    assert "give suite=DIR and predictions=DIR" in capsys.readouterr().err


def test_progress_bars_do_not_flood_logs(capsys):
    from splatworld.progress import progress_bar

    bar = progress_bar(range(1000), desc="work")  # stderr is captured here: not a terminal
    assert bar.mininterval == 30.0
    assert sum(bar) == 499500
    bar.close()
    assert capsys.readouterr().err.count("work") <= 2  # the first and the closing line, no redraws


def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path):
    """Where nvidia-smi finds no GPU (here a stand-in that fails, as it does without a driver)."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nexit 9\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip().splitlines() == ["gpu_check: no NVIDIA GPU here (nvidia-smi finds none): nothing to check"]

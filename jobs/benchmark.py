"""``splatworld benchmark``: the permanence suite end to end, for this model and the baselines.

Three jobs (:mod:`splatworld.evaluation.suite` describes the suite's layout):

- ``splatworld benchmark export out=DIR``: generate the suite's episodes (kept in ``DIR/episodes``
  and reused) and export them as tasks plus a separate ground truth.
- ``splatworld benchmark score suite=DIR predictions=DIR out=DIR``: score a folder of predictions
  (one folder per model, one prediction per task) into a leaderboard.
- ``splatworld benchmark out=DIR``: both, with this model and the baselines predicting every task
  in between (``DIR/predictions/<model>/<task>``, ``workers`` tasks in parallel); a rerun skips
  finished predictions and scores. The last line printed holds the headline figures as ``key=value``.

Predictors (:class:`~splatworld.evaluation.baselines.Predictor`): ``splatworld`` (this model),
``last_frame``, ``memoryless`` (objects forgotten once unseen for 1 s) and ``static_world`` (no
dynamics). Under ``return`` the imagined ones share one observation of the task.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from splatworld.errors import ConfigError
from splatworld.evaluation.baselines import LastFrame, Predictor
from splatworld.evaluation.evaluate import EvaluationConfig
from splatworld.evaluation.returns import ReturnWriter
from splatworld.evaluation.suite import PROTOCOLS, export_suite, load_suite, score_suite
from splatworld.imagination import WorldModel, imagine_returns
from splatworld.jobs.config import load_config
from splatworld.jobs.generate import generated_episode
from splatworld.jobs.imagine import imagine_episode
from splatworld.dynamics.train import load_dynamics
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.scene.episode import Episode


@dataclass(frozen=True)
class Imagined:
    """This world model as ``splatworld imagine`` runs it, or altered: a :class:`Predictor`.
    Under the imagination protocol it reuses the reference memory's observation of the same
    frames where given."""

    name: str
    model: str = "quasi_static"  # imagine.yaml's default
    forget_after: float | None = None

    def predict(self, task: Path, out: Path, *, reference_memory: Path | None = None, progress: bool = True) -> Path:
        episode = Episode(task)
        if episode.meta.get("protocol") == "return":
            imagined_returns([self], task, {self.name: out}, progress)
            return out
        overrides = [f"episode={task}", f"observe_until={episode.task_observe_until}", f"out={out}",
                     "compare=false", "video=false", f"progress={str(progress).lower()}", f"model={self.model}"]
        if self.forget_after is not None:
            overrides.append(f"forget_after={self.forget_after}")
        if reference_memory is not None and reference_memory.exists():
            overrides.append(f"memory={reference_memory}")
        return imagine_episode(load_config("imagine", overrides))


def imagined_returns(predictors: list[Imagined], task: Path, outs: dict[str, Path], progress: bool = True) -> None:
    """``predictors`` (variants of this model) on a return task, observing it once for all: each
    query's frame ``c`` (RGB and labels) into ``outs[name]``."""
    episode = Episode(task)
    defaults = load_config("imagine", [f"episode={task}", "observe_until=1"])
    memory = SceneMemory(MemoryConfig(backend=defaults.backend), episode.agent_label)
    worlds = [WorldModel(memory, load_dynamics(p.model, defaults.checkpoint), backend=defaults.backend,
                         forget_after=p.forget_after, agent_shape=episode.meta.get("agent_shape")) for p in predictors]
    writers = [ReturnWriter(outs[p.name]) for p in predictors]
    queries = [tuple(q) for q in episode.meta["queries"]]
    for q, frames in imagine_returns(worlds, episode, queries, progress):
        for writer, frame in zip(writers, frames):
            writer.write(q, frame.rgb, frame.instances)
    for writer in writers:
        writer.close()


MODEL = Imagined("splatworld")
PREDICTORS: tuple[Predictor, ...] = (MODEL, LastFrame(), Imagined("memoryless", forget_after=1.0),
                                     Imagined("static_world", model="static"))
"""This model first (the others may reuse the memory it saves), then the baselines."""


def predict_task(task: Path, predictions: Path, progress: bool = False) -> list[str]:
    """Every predictor's prediction of ``task`` into ``predictions/<name>/<task id>``, skipping the
    finished ones; returns the names that ran."""
    name = task.name
    todo = [p for p in PREDICTORS if not (predictions / p.name / name).exists()]
    for p in todo:
        (predictions / p.name).mkdir(parents=True, exist_ok=True)
    if Episode(task).meta.get("protocol") == "return":
        imagined = [p for p in todo if isinstance(p, Imagined)]
        if imagined:
            imagined_returns(imagined, task, {p.name: predictions / p.name / name for p in imagined}, progress)
        for p in todo:
            if not isinstance(p, Imagined):
                p.predict(task, predictions / p.name / name, progress=progress)
        return [p.name for p in todo]
    for p in todo:
        reference = None if p is MODEL else predictions / MODEL.name / name / "memory.pt"
        p.predict(task, predictions / p.name / name, reference_memory=reference, progress=progress)
    return [p.name for p in todo]


def suite_episodes(cfg: DictConfig, folder: Path) -> dict[str, Path]:
    """The suite's episodes (generated into ``folder`` unless already there, ``workers`` at a time):
    every preset of ``presets`` for every seed of ``seeds``, and each of ``once`` for the first seed."""
    runs = [(p, s) for p in cfg.presets for s in cfg.seeds] + [(p, cfg.seeds[0]) for p in cfg.once]
    args = [[folder] * len(runs), [p for p, _ in runs], [s for _, s in runs], [cfg.seconds] * len(runs),
            [cfg.progress and cfg.workers <= 1] * len(runs)]
    if cfg.workers <= 1:
        paths = list(map(generated_episode, *args))
    else:
        with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            paths = list(pool.map(generated_episode, *args))
    return {f"{preset}-s{seed}": path for (preset, seed), path in zip(runs, paths)}


def export(cfg: DictConfig) -> Path:
    """``splatworld benchmark export``: the suite at ``cfg.out`` (its episodes generated into
    ``cfg.out/episodes``; hand out ``tasks/`` alone)."""
    out = Path(cfg.out)
    export_suite(suite_episodes(cfg, out / "episodes"), out, cfg.observe_seconds, cfg.progress)
    return out


def _evaluation_config(cfg: DictConfig) -> EvaluationConfig:
    return EvaluationConfig(workers=cfg.workers, progress=cfg.progress, resize=cfg.resize)


def score(cfg: DictConfig) -> dict:
    """``splatworld benchmark score``: the leaderboard of ``cfg.predictions`` on ``cfg.suite``."""
    return score_suite(cfg.suite, cfg.predictions, cfg.out, _evaluation_config(cfg))


def run_benchmark(cfg: DictConfig) -> dict:
    """``splatworld benchmark``: export (unless done), predict every task with every predictor, score."""
    for protocol in cfg.protocols:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {protocol!r}; valid: {list(PROTOCOLS)} (next_frame is a mode of "
                              "`splatworld imagine`, not a benchmark protocol)")
    out = Path(cfg.out)
    suite = out / "suite"
    if not (suite / "suite.json").exists():
        export_suite(suite_episodes(cfg, out / "episodes"), suite, cfg.observe_seconds, cfg.progress)
    tasks = [t for t in load_suite(suite)["tasks"] if t["protocol"] in cfg.protocols]
    predictions = out / "predictions"
    longest_first = sorted(tasks, key=lambda t: -t["observe_until"] - (t["frames"] if t["protocol"] == "imagination"
                                                                         else 0))  # for even packing
    paths = [suite / "tasks" / t["id"] for t in longest_first]
    if cfg.workers <= 1:
        for path in paths:
            print(f"predicting {path.name}")
            predict_task(path, predictions, cfg.progress)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(cfg.workers, mp_context=context, initializer=torch.set_num_threads,
                                 initargs=(1,)) as pool:  # the pool is the parallelism
            for path, ran in zip(paths, pool.map(predict_task, paths, [predictions] * len(paths))):
                print(f"predicted {path.name}: {', '.join(ran) or 'already done'}")
    board = score_suite(suite, predictions, out / "leaderboard", _evaluation_config(cfg),
                        models=[p.name for p in PREDICTORS])
    print((out / "leaderboard" / "leaderboard.md").read_text())
    print(headline(board))
    return board


def headline(board: dict) -> str:
    """One ``key=value`` line: OPR, presence and OPR_rgb of every model, protocol and class."""
    pairs = []
    for model, by_protocol in board.items():
        for protocol, entry in by_protocol.items():
            for group in ("all", "still", "moved"):
                cell = entry["permanence"]["classes"][group]
                for key in ("opr", "presence", "opr_rgb"):
                    value = cell[key]
                    pairs.append(f"{key}_{model}_{protocol}_{group}={'nan' if value is None else round(value, 4)}")
    return " ".join(pairs)


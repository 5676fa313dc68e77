"""The permanence benchmark as a suite any video world model can take part in: export, score, leaderboard.

An exported suite (``splatworld benchmark export``) is a folder::

    suite.json                 the manifest: version, protocols, one entry per task
    tasks/<task id>/           what a model is given: an episode directory (the episode format) whose
                               frames [0, k) are in full and whose later frames carry only the camera,
                               time, agent pose and action (``task_observe_until`` = k)
    ground_truth/<episode>/    the full episodes, with ground_truth.json and counterfactual frames:
                               keep them apart; the tasks folder alone can be handed to someone else

Each episode gives two tasks. ``<episode>-imagination``: observe ``[0, k)``, predict every frame
``[k, T)`` (``frames`` of them). ``<episode>-return``: for each query ``(b, c)`` in ``queries``,
observe every frame before ``b`` and imagine ``b..c``; predict frame ``c`` (one frame per query, in
order). A return task holds the episode's frames up to the last ``b``, so it shows what the
imagination task of the same episode hides: hand it out after the imagination predictions are in.

Predictions (``splatworld benchmark score``) sit in ``predictions/<model>/<task id>`` as an mp4
(``<task id>.mp4``), a folder of numbered frames (a return prediction may add ``instances/``) or an
episode directory (imagination). Each task's scores are written to ``out/scores/<model>/<task id>.json``
as it finishes; a rerun skips finished tasks, so nothing scored is lost to a later failure.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from splatworld.atomic import atomic_write_text
from splatworld.errors import SplatworldError
from splatworld.evaluation.evaluate import EvaluationConfig, evaluate_prediction
from splatworld.evaluation.permanence import TAU_BINS, permanence_rate
from splatworld.evaluation.predictions import PredictionError
from splatworld.evaluation.report import jsonable, plot_permanence
from splatworld.evaluation.returns import evaluate_returns, return_events
from splatworld.progress import progress_bar
from splatworld.scene.episode import Episode

SUITE_VERSION = 1
PROTOCOLS = ("imagination", "return")
"""The benchmark's protocols (``next_frame`` is a mode of ``splatworld imagine``, not one of them)."""


class SuiteError(SplatworldError):
    """Tasks that could not be scored, each named with its problem (the others were scored)."""


def _link(source, target) -> None:
    """A hard link (exported suites cost no disk), or a copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _link_tree(source: Path, target: Path) -> None:
    """``target`` as a copy of ``source`` made of hard links."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, copy_function=_link)


def export_task(episode: Episode, out: Path, observe_until: int, frames_until: int, extra: dict) -> None:
    """Write a task: ``episode``'s frames ``[0, observe_until)`` in full (images hard-linked) and frames
    ``[observe_until, frames_until)`` as camera, time, agent pose and action only."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    frames = []
    for i, entry in enumerate(episode.meta["frames"][:frames_until]):
        if i >= observe_until:
            entry = {k: v for k, v in entry.items() if not k.endswith("file_path")}
        else:
            for key in ("file_path", "depth_file_path", "instance_file_path"):
                if key in entry:
                    (tmp / entry[key]).parent.mkdir(parents=True, exist_ok=True)
                    _link(episode.path / entry[key], tmp / entry[key])
        frames.append(entry)
    meta = {**episode.meta, **extra, "task_observe_until": observe_until, "frames": frames}
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "transforms.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def export_suite(episodes: dict[str, Path], out, observe_seconds: float, progress: bool = True) -> dict:
    """Export ``episodes`` (name -> generated episode with ground truth) as a suite at ``out``;
    returns the manifest (also written as ``suite.json``)."""
    out = Path(out)
    tasks = []
    for name, path in progress_bar(list(episodes.items()), desc="export", unit="episode", disable=not progress):
        episode = Episode(path)
        truth = episode.ground_truth()
        if "events" not in (truth or {}):
            raise SuiteError(f"{path}: no counterfactual events in ground_truth.json (generate it again)")
        _link_tree(episode.path, out / "ground_truth" / name)
        k = round(observe_seconds * episode.fps)
        if not 0 < k < len(episode):
            raise SuiteError(f"{name}: observe_seconds={observe_seconds} leaves no frame to predict")
        common = {"episode": name, "width": episode.width, "height": episode.height, "fps": episode.fps}
        task = f"{name}-imagination"
        export_task(episode, out / "tasks" / task, k, len(episode), {"task": task, "protocol": "imagination"})
        tasks.append({"id": task, "protocol": "imagination", "observe_until": k, "frames": len(episode) - k,
                      **common})
        queries = [[e["reappears"], e["scored_at"]] for e in return_events(episode, truth)]
        if queries:
            task = f"{name}-return"
            last_b, last_c = max(b for b, _ in queries), max(c for _, c in queries)
            export_task(episode, out / "tasks" / task, last_b, last_c + 1,
                        {"task": task, "protocol": "return", "queries": queries})
            tasks.append({"id": task, "protocol": "return", "observe_until": last_b, "frames": len(queries),
                          "queries": queries, **common})
    manifest = {"suite_version": SUITE_VERSION, "protocols": list(PROTOCOLS), "observe_seconds": observe_seconds,
                "tasks": tasks}
    atomic_write_text(out / "suite.json", json.dumps(manifest, indent=1))
    return manifest


def load_suite(suite) -> dict:
    file = Path(suite) / "suite.json"
    if not file.is_file():
        raise SuiteError(f"{file}: missing (export a suite with `splatworld benchmark export out=DIR`)")
    manifest = json.loads(file.read_text())
    if manifest.get("suite_version") != SUITE_VERSION:
        raise SuiteError(f"{file}: suite version {manifest.get('suite_version')!r}, this scorer reads {SUITE_VERSION}")
    return manifest


def find_prediction(folder: Path, task: str) -> Path:
    """The prediction of ``task`` in a model's ``folder``: ``<task>.mp4`` or ``<task>/``."""
    for candidate in (folder / f"{task}.mp4", folder / task):
        if candidate.exists():
            return candidate
    raise PredictionError(folder, f"task {task}: no prediction ({task}.mp4 or {task}/)")


def score_task(suite, task: dict, prediction: Path, config: EvaluationConfig) -> dict:
    """The report of one task's prediction (:func:`evaluate_prediction` or :func:`evaluate_returns`)."""
    truth = Path(suite) / "ground_truth" / task["episode"]
    if task["protocol"] == "return":
        return evaluate_returns(truth, prediction, config)
    return evaluate_prediction(truth, prediction, config, observe_until=task["observe_until"])


def score_suite(suite, predictions, out, config: EvaluationConfig = EvaluationConfig(),
                models: list[str] | None = None) -> dict:
    """Score every model folder of ``predictions`` (or ``models``) on every task of ``suite`` and
    write the leaderboard into ``out``; returns it.

    Raises:
        SuiteError: after scoring everything else and writing the leaderboard of what was scored,
            when some tasks failed: one line per task, naming it and the problem.
    """
    suite, predictions, out = Path(suite), Path(predictions), Path(out)
    manifest = load_suite(suite)
    models = models or sorted(p.name for p in predictions.iterdir() if p.is_dir())
    if not models:
        raise SuiteError(f"{predictions}: no model folders (predictions/<model>/<task id>)")
    scores, errors = {}, []
    for model in models:
        scores[model] = {}
        for task in manifest["tasks"]:
            file = out / "scores" / model / f"{task['id']}.json"
            if file.exists():
                scores[model][task["id"]] = json.loads(file.read_text())
                continue
            try:
                print(f"scoring {model} on {task['id']}")
                report = score_task(suite, task, find_prediction(predictions / model, task["id"]), config)
            except SplatworldError as error:
                errors.append(f"{model} / {task['id']}: {error}")
                continue
            kept = {k: report[k] for k in ("protocol", "frames", "opr_all", "opr_rgb", "permanence", "events",
                                           "not_available") if k in report}
            kept.setdefault("protocol", task["protocol"])
            atomic_write_text(file, json.dumps(jsonable(kept)))
            scores[model][task["id"]] = json.loads(file.read_text())
    board = leaderboard(scores)
    write_leaderboard(board, out)
    if errors:
        raise SuiteError(f"{len(errors)} task(s) not scored (the rest are in {out}):\n" + "\n".join(errors))
    return board


def agreement(events: list[dict], reference: str = "opr", min_iou: float = 0.5) -> dict:
    """How often the RGB-only verdict (OPR_rgb) agrees with a mask verdict (``reference``: ``opr``,
    IoU >= ``min_iou``, or ``presence``) on events that have both: the confusion table and the
    agreement rate."""
    mask = (lambda e: e["iou"] >= min_iou) if reference == "opr" else (lambda e: e["presence"])  # noqa: E731
    both = [(mask(e), e["opr_rgb"]) for e in events
            if e.get(reference if reference == "presence" else "iou") is not None and e.get("opr_rgb") is not None]
    table = {"mask_yes_rgb_yes": sum(m and r for m, r in both), "mask_yes_rgb_no": sum(m and not r for m, r in both),
             "mask_no_rgb_yes": sum(r and not m for m, r in both), "mask_no_rgb_no": sum(not m and not r for m, r in both)}
    return {"events": len(both), **table,
            "agreement": (table["mask_yes_rgb_yes"] + table["mask_no_rgb_no"]) / len(both) if both else None}


def leaderboard(scores: dict[str, dict[str, dict]]) -> dict:
    """Per model and protocol: the events of all its tasks pooled into one permanence table
    (:func:`~splatworld.evaluation.permanence.permanence_rate`) and the OPR / OPR_rgb agreement."""
    board = {}
    for model, tasks in scores.items():
        board[model] = {}
        for protocol in PROTOCOLS:
            chosen = [t for t in tasks.values() if t.get("protocol") == protocol]
            events = [e for t in chosen for e in t.get("events", []) if "opr_rgb" in e]
            board[model][protocol] = {"tasks": len(chosen), "permanence": permanence_rate(events),
                                      "agreement": agreement(events),
                                      "agreement_with_presence": agreement(events, "presence")}
    return board


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def leaderboard_markdown(board: dict) -> str:
    """Per protocol: every model's OPR / presence / OPR_rgb for all, still and moved events, then per
    hidden-time bin, then the OPR_rgb / OPR agreement."""
    lines = []
    for protocol in PROTOCOLS:
        lines += [f"## {protocol}", "", "| model | class | events | OPR | presence | OPR_rgb | "
                  + " | ".join(f"OPR / OPR_rgb {b}" for _, b in TAU_BINS) + " |",
                  "| --- | --- | --- | --- | --- | --- |" + " --- |" * len(TAU_BINS)]
        for model, by_protocol in board.items():
            perm = by_protocol[protocol]["permanence"]
            for group in ("all", "still", "moved"):
                cell = perm["classes"][group]
                bins = perm["bins"][group]
                lines.append(f"| {model} | {group} | {cell['events']} | {_pct(cell['opr'])} | {_pct(cell['presence'])} | "
                             f"{_pct(cell['opr_rgb'])} | " + " | ".join(
                                 f"{_pct(bins[b]['opr'])} / {_pct(bins[b]['opr_rgb'])} ({bins[b]['events']})"
                                 for _, b in TAU_BINS) + " |")
        for key, title in (("agreement", "mask OPR"), ("agreement_with_presence", "mask presence")):
            lines += ["", f"OPR_rgb against {title} (events with both verdicts):", "",
                      "| model | events | agree | mask yes, rgb yes | mask yes, rgb no | mask no, rgb yes | mask no, rgb no |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for model, by_protocol in board.items():
                a = by_protocol[protocol][key]
                lines.append(f"| {model} | {a['events']} | {_pct(a['agreement'])} | {a['mask_yes_rgb_yes']} | "
                             f"{a['mask_yes_rgb_no']} | {a['mask_no_rgb_yes']} | {a['mask_no_rgb_no']} |")
        lines.append("")
    return "\n".join(lines)


def write_leaderboard(board: dict, out) -> None:
    """``leaderboard.json``, ``leaderboard.md`` and ``permanence_<protocol>.png`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "leaderboard.json", json.dumps(jsonable(board), indent=1))
    atomic_write_text(out / "leaderboard.md", leaderboard_markdown(board))
    for protocol in PROTOCOLS:
        plot_permanence({model: {"permanence": p[protocol]["permanence"]} for model, p in board.items()},
                        out / f"permanence_{protocol}.png")

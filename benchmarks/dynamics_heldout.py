"""Every dynamics model on held-out pushing behaviours and objects, and a peer checkpoint.

    python benchmarks/dynamics_heldout.py [--checkpoint FILE] [--peer FILE] [--episodes DIR] [--out DIR]
                                          [--seeds 100 101 102 103]

Runs ``splatworld eval-dynamics`` (configs/eval_dynamics.yaml: `push_heldout` episodes, two
minutes each, behaviours and objects the training mixture never holds) for every model of the
config (the learned one with ``--checkpoint``, default: the shipped one), and for ``--peer``
(another checkpoint, e.g. one trained on a single pushing style) on the same episodes; the
memory's tracks of each episode are cached beside it, so the second evaluation only rolls out.
Prints the issue's figures for every model. Last line: ``<model>_push_end_median=...
<model>_push_end_p90=... <model>_pushed_30s_median=... <model>_table_correct=...`` for each model
(``peer_...`` for the peer checkpoint), then ``ratio_physics=...`` (quasi-static pushing's
end-of-push median over rigid-body physics': above 1, physics is better) and, with a peer,
``ratio_peer=...`` (the peer's learned median over the checkpoint's) (metres).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from splatworld.jobs.config import load_config
from splatworld.jobs.eval_dynamics import evaluate_dynamics


def figures(report: dict, model: str) -> dict[str, float | None]:
    """The figures of ``model`` in ``report`` (an eval-dynamics report.json)."""
    rows, ends = report["results"], report["push_ends"][model]
    return {"push_end_median": ends["position_median"], "push_end_p90": ends["position_p90"],
            "push_end_rotation_deg": ends["rotation_median_deg"], "table_correct": ends["table_correct"],
            "pushes": ends["n"], "falls": ends["fell"], "predicted_falls": ends["predicted_fell"],
            "pushed_1s_median": rows[f"{model}_1s"]["pushed_position_median"],
            "pushed_5s_median": rows[f"{model}_5s"]["pushed_position_median"],
            "pushed_30s_median": rows[f"{model}_30s"]["pushed_position_median"],
            "sequence_median": rows[f"{model}_sequence"]["pushed_position_median"],
            "sequence_p90": rows[f"{model}_sequence"]["pushed_position_p90"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="default: the checkpoint shipped with the package")
    parser.add_argument("--peer", default=None, help="a second checkpoint scored on the same episodes")
    parser.add_argument("--episodes", default="benchmarks/.episodes/heldout")
    parser.add_argument("--out", type=Path, default=Path("dynamics_heldout_out"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: eval_dynamics.yaml's")
    args = parser.parse_args()
    common = [f"episodes={args.episodes}"] + ([f"seeds={json.dumps(args.seeds)}"] if args.seeds else [])
    runs = {"checkpoint": evaluate_dynamics(load_config("eval_dynamics", common + [
        f"out={args.out / 'checkpoint'}", f"checkpoint={json.dumps(args.checkpoint)}"]))}
    if args.peer:
        runs["peer"] = evaluate_dynamics(load_config("eval_dynamics", common + [
            f"out={args.out / 'peer'}", f"checkpoint={json.dumps(args.peer)}", "models=[learned]"]))
    print((args.out / "checkpoint" / "report.md").read_text())
    table = {model: figures(runs["checkpoint"], model) for model in runs["checkpoint"]["push_ends"]}
    if "peer" in runs:
        table["peer"] = figures(runs["peer"], "learned")
    print(f"{'figure':<24}" + "".join(f"{name:>14}" for name in table))
    for key in next(iter(table.values())):
        cells = ["-" if t[key] is None else f"{t[key]:.4f}" for t in table.values()]
        print(f"{key:<24}" + "".join(f"{c:>14}" for c in cells))
    pairs = {f"{name}_{k}": t[k] for name, t in table.items()
             for k in ("push_end_median", "push_end_p90", "pushed_30s_median", "table_correct")}
    if "physics" in table and "quasi_static" in table:
        pairs["ratio_physics"] = table["quasi_static"]["push_end_median"] / table["physics"]["push_end_median"]
    if "peer" in table:
        pairs["ratio_peer"] = table["peer"]["push_end_median"] / table["learned"]["push_end_median"]
    print(" ".join(f"{k}={'nan' if v is None else f'{v:.4f}'}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()

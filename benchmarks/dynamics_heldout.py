"""Learned dynamics on held-out pushing behaviours and objects, against a peer checkpoint.

    python benchmarks/dynamics_heldout.py [--checkpoint FILE] [--peer FILE] [--episodes DIR] [--out DIR]
                                          [--seeds 100 101 102 103]

Runs ``splatworld eval-dynamics`` (configs/eval_dynamics.yaml: `push_heldout` episodes, two
minutes each, behaviours and objects the training mixture never holds) for ``--checkpoint``
(default: the shipped one) with the static and constant-velocity baselines, and for ``--peer``
(another checkpoint, e.g. one trained on a single pushing style) on the same episodes; the
memory's tracks of each episode are cached beside it, so the second evaluation only rolls out.
Prints the issue's figures for both and their ratios (peer / checkpoint: above 1, the checkpoint
is better). Last line: ``push_end_median=... push_end_p90=... pushed_30s_median=...
table_correct=... sequence_median=... peer_push_end_median=... peer_pushed_30s_median=...
peer_table_correct=... ratio_push_end=... ratio_30s=...`` (metres).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from splatworld.jobs.config import load_config
from splatworld.jobs.eval_dynamics import evaluate_dynamics


def figures(report: dict) -> dict[str, float | None]:
    """The learned model's figures in ``report`` (an eval-dynamics report.json)."""
    rows, ends = report["results"], report["push_ends"]["learned"]
    return {"push_end_median": ends["position_median"], "push_end_p90": ends["position_p90"],
            "push_end_rotation_deg": ends["rotation_median_deg"], "table_correct": ends["table_correct"],
            "pushes": ends["n"], "falls": ends["fell"], "predicted_falls": ends["predicted_fell"],
            "pushed_1s_median": rows["learned_1s"]["pushed_position_median"],
            "pushed_5s_median": rows["learned_5s"]["pushed_position_median"],
            "pushed_30s_median": rows["learned_30s"]["pushed_position_median"],
            "sequence_median": rows["learned_sequence"]["pushed_position_median"],
            "sequence_p90": rows["learned_sequence"]["pushed_position_p90"]}


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
    table = {name: figures(report) for name, report in runs.items()}
    print(f"{'figure':<24}" + "".join(f"{name:>14}" for name in table))
    for key in table["checkpoint"]:
        cells = ["-" if t[key] is None else f"{t[key]:.4f}" for t in table.values()]
        print(f"{key:<24}" + "".join(f"{c:>14}" for c in cells))
    mine = table["checkpoint"]
    pairs = {k: mine[k] for k in ("push_end_median", "push_end_p90", "pushed_30s_median", "table_correct",
                                  "sequence_median")}
    if "peer" in table:
        peer = table["peer"]
        pairs |= {f"peer_{k}": peer[k] for k in ("push_end_median", "pushed_30s_median", "table_correct")}
        pairs["ratio_push_end"] = peer["push_end_median"] / mine["push_end_median"]
        pairs["ratio_30s"] = peer["pushed_30s_median"] / mine["pushed_30s_median"]
    print(" ".join(f"{k}={'nan' if v is None else f'{v:.4f}'}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()

"""The permanence suite end to end (`splatworld benchmark`), then the issue's bars from its leaderboard.

    python benchmarks/permanence_suite.py OUT [key=value ...]     (overrides of `splatworld benchmark`)
    python benchmarks/permanence_suite.py OUT --score-only          (score OUT/predictions as they are)

Runs (or resumes) the suite into OUT (or, with --score-only, scores the predictions there, reporting
the tasks without one), then prints per protocol: the OPR_rgb / OPR agreement over
the events of all four models, each model's mean-rate difference, and the baselines' OPR on `still`
events hidden more than 10 s. The peer of every figure is the mask verdict measured on the same
events. Last line: ``agreement=... events=... agreement_with_presence=... max_rate_gap=... baseline_still_over_10s_max=...``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from splatworld.evaluation.evaluate import EvaluationConfig
from splatworld.evaluation.suite import SuiteError, score_suite
from splatworld.jobs.benchmark import PREDICTORS, run_benchmark
from splatworld.jobs.config import load_config

LONG_BINS = ("<=60s", "<=300s", ">300s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--score-only", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.score_only:
        out = Path(args.out)
        try:
            board = score_suite(out / "suite", out / "predictions", out / "leaderboard",
                                EvaluationConfig(workers=2, progress=False), models=[p.name for p in PREDICTORS])
        except SuiteError as error:
            print(error)
            board = json.loads((out / "leaderboard" / "leaderboard.json").read_text())
        print((out / "leaderboard" / "leaderboard.md").read_text())
    else:
        board = run_benchmark(load_config("benchmark", [f"out={args.out}", *args.overrides]))
    minutes = (time.perf_counter() - started) / 60
    agree = total = agree_presence = total_presence = 0
    gaps, baseline = [], []
    for model, by_protocol in board.items():
        for protocol, entry in by_protocol.items():
            a, classes = entry["agreement"], entry["permanence"]["classes"]["all"]
            agree += a["mask_yes_rgb_yes"] + a["mask_no_rgb_no"]
            total += a["events"]
            p = entry["agreement_with_presence"]
            agree_presence += p["mask_yes_rgb_yes"] + p["mask_no_rgb_no"]
            total_presence += p["events"]
            if classes["opr"] is not None and classes["opr_rgb"] is not None:
                gaps.append(abs(classes["opr"] - classes["opr_rgb"]))
                print(f"{model:>13} {protocol:>11}: OPR {classes['opr']:.3f} OPR_rgb {classes['opr_rgb']:.3f} "
                      f"(agreement {a['agreement']:.3f} over {a['events']} events)")
            if model in ("last_frame", "memoryless"):
                bins = entry["permanence"]["bins"]["still"]
                events = sum(bins[b]["opr_events"] for b in LONG_BINS)
                hits = sum(round(bins[b]["opr"] * bins[b]["opr_events"]) for b in LONG_BINS if bins[b]["opr"] is not None)
                rate = hits / events if events else float("nan")
                baseline.append(rate)
                print(f"{model:>13} {protocol:>11}: OPR on still events hidden > 10 s {rate:.3f} ({events} events)")
    # the events where the RGB verdict and the mask verdict disagree: near misses or unrelated content?
    disagree = [e for scores in Path(args.out, "leaderboard", "scores").glob("*/*.json")
                for e in json.loads(scores.read_text())["events"]
                if e.get("iou") is not None and e.get("opr_rgb") is not None and (e["iou"] >= 0.5) != e["opr_rgb"]]
    rgb_only = [e for e in disagree if e["opr_rgb"]]
    if rgb_only:
        print(f"{len(rgb_only)} events present by RGB but not by mask: median IoU "
              f"{np.median([e['iou'] for e in rgb_only]):.2f}, {np.mean([e['presence'] for e in rgb_only]):.0%} "
              f"drawn within 25 px, median footprint {np.median([e['opr_rgb_pixels'] for e in rgb_only]):.0f} px")
    print(f"suite run in {minutes:.1f} min")
    print(f"agreement={agree / total if total else float('nan'):.4f} events={total} "
          f"agreement_with_presence={agree_presence / total_presence if total_presence else float('nan'):.4f} "
          f"max_rate_gap={max(gaps, default=float('nan')):.4f} "
          f"baseline_still_over_10s_max={max(baseline, default=float('nan')):.4f} minutes={minutes:.1f}")


if __name__ == "__main__":
    main()

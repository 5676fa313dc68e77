"""Evaluator speed: score one predicted episode against its ground truth, timed.

    python benchmarks/evaluate.py GT_DIR PRED_DIR [--workers 2]

e.g. the `long` preset (10 minutes) and its imagination:
    splatworld generate scenario=long seed=0 out=/tmp/eps/long_seed0
    splatworld imagine episode=/tmp/eps/long_seed0 observe_until=300 out=/tmp/ev/splatworld

The peer is the I/O floor measured in the same run: decoding every frame of both episodes (RGB,
depth, instances) once, in one process. Last line:
``eval_seconds=... decode_seconds=... ratio=... predicted_seconds=... realtime_factor=...``.
"""

from __future__ import annotations

import argparse
import time

from splatworld.evaluation.evaluate import EvaluationConfig, evaluate_prediction
from splatworld.scene.episode import Episode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gt")
    parser.add_argument("pred")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    report = evaluate_prediction(args.gt, args.pred, EvaluationConfig(workers=args.workers, progress=True))
    eval_seconds = time.perf_counter() - started

    gt, pred = Episode(args.gt), Episode(args.pred)
    offset = round(pred.info(0).time * gt.fps)
    started = time.perf_counter()
    for i in range(len(pred)):
        pred[i], gt[offset + i]
    decode_seconds = time.perf_counter() - started

    print(f"{len(pred)} predicted frames ({report['seconds']:.0f} s of video): evaluated in {eval_seconds:.1f} s; "
          f"decoding both episodes once takes {decode_seconds:.1f} s in one process")
    print(f"opr_all={report['opr_all']}")
    print(f"eval_seconds={eval_seconds:.1f} decode_seconds={decode_seconds:.1f} ratio={eval_seconds / decode_seconds:.2f} "
          f"predicted_seconds={report['seconds']:.0f} realtime_factor={report['seconds'] / eval_seconds:.1f}")


if __name__ == "__main__":
    main()

"""Evaluator speed: score one predicted episode against its ground truth, and the same prediction as
an mp4 (RGB alone, as an outside video model would hand it in), timed.

    python benchmarks/evaluate.py GT_DIR PRED_DIR [--workers 2]

e.g. the `long` preset (10 minutes) and its imagination:
    splatworld generate scenario=long seed=0 out=/tmp/eps/long_seed0
    splatworld imagine episode=/tmp/eps/long_seed0 observe_until=300 out=/tmp/ev/splatworld

Peers measured in the same run: the I/O floor (decoding every frame of both episodes once, in one
process) and, for the mp4, scoring the prediction as an episode. The mp4 is encoded before the
clock starts. Last line: ``eval_seconds=... decode_seconds=... ratio=... mp4_eval_seconds=...
mp4_vs_episode=... predicted_seconds=... realtime_factor=...``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from splatworld.evaluation.evaluate import EvaluationConfig, evaluate_prediction
from splatworld.render.video import FrameWriter
from splatworld.scene.episode import Episode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gt")
    parser.add_argument("pred")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = EvaluationConfig(workers=args.workers, progress=True)

    started = time.perf_counter()
    report = evaluate_prediction(args.gt, args.pred, config)
    eval_seconds = time.perf_counter() - started

    gt, pred = Episode(args.gt), Episode(args.pred)
    offset = round(pred.info(0).time * gt.fps)
    started = time.perf_counter()
    for i in range(len(pred)):
        pred[i], gt[offset + i]
    decode_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as scratch:
        video = Path(scratch) / "prediction.mp4"
        with FrameWriter(video, fps=gt.fps) as writer:
            for i in range(len(pred)):
                writer.write(pred[i].rgb)
        started = time.perf_counter()
        from_video = evaluate_prediction(args.gt, video, config, observe_until=offset)
        mp4_seconds = time.perf_counter() - started

    print(f"{len(pred)} predicted frames ({report['seconds']:.0f} s of video): evaluated in {eval_seconds:.1f} s; "
          f"decoding both episodes once takes {decode_seconds:.1f} s in one process; the same prediction as an "
          f"mp4 (RGB alone) is scored in {mp4_seconds:.1f} s")
    print(f"episode: opr_all={report['opr_all']} opr_rgb={report['opr_rgb']}; mp4: opr_rgb={from_video['opr_rgb']}")
    print(f"eval_seconds={eval_seconds:.1f} decode_seconds={decode_seconds:.1f} ratio={eval_seconds / decode_seconds:.2f} "
          f"mp4_eval_seconds={mp4_seconds:.1f} mp4_vs_episode={mp4_seconds / eval_seconds:.2f} "
          f"predicted_seconds={report['seconds']:.0f} realtime_factor={report['seconds'] / eval_seconds:.1f}")


if __name__ == "__main__":
    main()

"""``splatworld evaluate``: one or several predictions against one ground truth, as a report.

Writes ``report.json`` (every metric of every prediction; the first prediction's overall object
permanence rate also at the top, under ``opr_all``), ``report.md`` (the headline metrics side by
side) and two plots: ``permanence.png`` (OPR and mean IoU against hidden duration) and
``drift.png`` (PSNR, SSIM and depth AbsRel against the horizon).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from splatworld.atomic import atomic_write_text
from splatworld.errors import ConfigError  # noqa: E402
from splatworld.evaluation.evaluate import EvaluationConfig, evaluate_prediction  # noqa: E402
from splatworld.evaluation.permanence import TAU_BINS  # noqa: E402


def _names(preds: list[str], names: list[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(preds):
            raise ConfigError(f"names: {len(names)} names for {len(preds)} predictions")
        return list(names)
    out = []
    for p in preds:
        base = Path(p).name or str(p)
        out.append(base if base not in out else f"{base}_{len(out)}")
    return out


def _fmt(value, kind: str = "f3") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "db":
        return f"{value:.2f}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def opr_bins(report: dict) -> dict:
    """``{tau bin: {events, successes, opr, mean_iou}}`` over all causes; empty where permanence is
    not available."""
    return ((report.get("permanence") or {}).get("bins") or {}).get("all", {})


def _rows(report: dict) -> list[tuple[str, str]]:
    """The headline metrics of one prediction, as (label, text) rows."""
    perm = report.get("permanence") or {}
    bins = opr_bins(report)
    ident = report.get("identity") or {}
    hidden = report.get("hidden_state") or {}
    revisit = report["revisit"]["versus_truth"]
    selfc = report["revisit"]["self_consistency"]
    drift, motion = report["drift"], report["motion"]
    classes = perm.get("classes") or {}
    rows = [("OPR, all events", _fmt(report.get("opr_all"), "pct")),
            ("OPR_rgb, all events", _fmt(report.get("opr_rgb"), "pct")),
            ("presence, all events", _fmt(perm.get("presence_all"), "pct")),
            ("mean IoU at reappearance", _fmt(perm.get("mean_iou_all")))]
    for group in ("still", "moved"):
        cell = classes.get(group, {})
        rows += [(f"{key}, {group} ({cell.get('events', 0)} events)", _fmt(cell.get(metric), "pct"))
                 for key, metric in (("OPR", "opr"), ("OPR_rgb", "opr_rgb"), ("presence", "presence"))]
    rows += [(f"OPR, hidden {name} ({bins.get(name, {}).get('events', 0)} events)",
              _fmt(bins.get(name, {}).get("opr"), "pct")) for _, name in TAU_BINS]
    rows += [("hidden-state error, median (m)", _fmt(hidden.get("median_error_m"))),
             ("hidden-state success <= 2 cm", _fmt(hidden.get("success_2cm"), "pct")),
             ("hidden-state success <= 5 cm", _fmt(hidden.get("success_5cm"), "pct")),
             ("IDF1", _fmt(ident.get("idf1"))),
             ("ID switches / min", _fmt(ident.get("id_switches_per_min"))),
             ("spurious objects / min", _fmt(ident.get("spurious_objects_per_min"))),
             ("vanishings / min", _fmt(ident.get("vanishings_per_min")))]
    rows += [(f"revisit PSNR static, {name} (dB)", _fmt(cell["psnr"], "db")) for name, cell in revisit.items()]
    rows += [(f"revisit SSIM static, {name}", _fmt(cell["ssim"])) for name, cell in revisit.items()]
    rows += [(f"self-consistency PSNR, {name} (dB)", _fmt(cell["psnr"], "db")) for name, cell in selfc.items()]
    first = lambda key: drift[key][0] if drift[key] else None  # noqa: E731
    last = lambda key: drift[key][-1] if drift[key] else None  # noqa: E731
    rows += [("PSNR first / last second (dB)", f"{_fmt(first('psnr_per_second'), 'db')} / "
                                               f"{_fmt(last('psnr_per_second'), 'db')}"),
             ("SSIM first / last second", f"{_fmt(first('ssim_per_second'))} / {_fmt(last('ssim_per_second'))}"),
             ("depth AbsRel first / last second", f"{_fmt(first('abs_rel_per_second'))} / "
                                                  f"{_fmt(last('abs_rel_per_second'))}"),
             ("PSNR area (dB s)", _fmt(drift["psnr_area_db_s"], "db")),
             ("PSNR half-life (s)", _fmt(drift["half_life_s"]) if drift["half_life_s"] is not None
              else f"> {len(drift['seconds'])}"),
             ("Physics-IQ spatial IoU", _fmt(motion["spatial_iou"])),
             ("Physics-IQ spatiotemporal IoU", _fmt(motion["spatiotemporal_iou"])),
             ("Physics-IQ weighted spatial IoU", _fmt(motion["weighted_spatial_iou"])),
             ("Physics-IQ MSE", f"{motion['mse']:.5f}")]
    return rows


def markdown(reports: dict[str, dict]) -> str:
    """The headline metrics of every prediction side by side, as a markdown table."""
    names = list(reports)
    table = {name: _rows(r) for name, r in reports.items()}
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for n, (label, _) in enumerate(table[names[0]]):
        lines.append(f"| {label} | " + " | ".join(table[name][n][1] for name in names) + " |")
    missing = {f"{name}: {metric}": why for name, r in reports.items() for metric, why in r["not_available"].items()}
    if missing:
        lines += ["", "Not available:"] + [f"- {k}: {v}" for k, v in missing.items()]
    return "\n".join(lines) + "\n"


PLOTTED = (("opr", "OPR (mask IoU >= 0.5)"), ("presence", "presence"), ("opr_rgb", "OPR_rgb"))


def plot_permanence(reports: dict[str, dict], file: Path) -> None:
    """OPR, presence and OPR_rgb against hidden duration, for ``still`` (top) and ``moved``
    (bottom) events, one line per prediction."""
    fig, axes = plt.subplots(2, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 7), sharex=True, squeeze=False)
    labels = [name for _, name in TAU_BINS]
    for name, r in reports.items():
        groups = (r.get("permanence") or {}).get("bins") or {}
        for row, group in enumerate(("still", "moved")):
            if group not in groups:
                continue
            for ax, (key, _) in zip(axes[row], PLOTTED):
                values = [np.nan if groups[group][b][key] is None else groups[group][b][key] for b in labels]
                ax.plot(labels, values, marker="o", label=name)
    for row, group in enumerate(("still", "moved")):
        for ax, (_, title) in zip(axes[row], PLOTTED):
            ax.set(title=f"{title}, {group}", xlabel="hidden for" if row else None, ylim=(-0.02, 1.02))
            ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)


def plot_drift(reports: dict[str, dict], file: Path) -> None:
    """PSNR, SSIM and depth AbsRel per second of horizon, one line per prediction."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, r in reports.items():
        d = r["drift"]
        for ax, key in zip(axes, ("psnr_per_second", "ssim_per_second", "abs_rel_per_second")):
            ax.plot(d["seconds"], [np.nan if v is None else v for v in d[key]], label=name, lw=1)
    _finish(fig, axes, ("PSNR (dB)", "SSIM", "depth AbsRel"), "horizon (s)", file)


def plot_trajectory_error(runs: dict[str, dict], file: Path) -> None:
    """Camera position error (mm) and rotation error (degrees) over time, one line per run; each
    run a dict of ``times``, ``position`` (m), ``rotation`` (degrees) ``[T]`` and optionally ``lost``
    (bool ``[T]``: frames the tracker could not place, marked with crosses)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    for name, run in runs.items():
        times = np.asarray(run["times"])
        for ax, values, scale in zip(axes, (run["position"], run["rotation"]), (1000.0, 1.0)):
            line, = ax.plot(times, np.asarray(values) * scale, lw=1, label=name)
            lost = np.asarray(run.get("lost", np.zeros(len(times), bool)), bool)
            if lost.any():
                ax.plot(times[lost], np.asarray(values)[lost] * scale, "x", ms=3, color=line.get_color())
    _finish(fig, axes, ("camera position error (mm)", "camera rotation error (degrees)"), "time (s)", file)


def _finish(fig, axes, titles: tuple[str, ...], xlabel: str, file: Path) -> None:
    """Title, label and grid a row of axes, put the legend on the first, save at 110 dpi and close."""
    for ax, title in zip(axes, titles):
        ax.set(title=title, xlabel=xlabel)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)


def jsonable(value):
    """Strict JSON: NaN becomes null and an infinite PSNR (identical images) the string "inf"."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else (str(float(value)) if np.isinf(value) else float(value))
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def evaluate(gt: str, preds: list[str], out: str, names: list[str] | None = None,
             config: EvaluationConfig = EvaluationConfig(), observe_until: int | None = None) -> dict:
    """Evaluate every prediction (episode directory, frame folder or mp4; the latter two hold frames
    ``[observe_until, T)``) against ``gt`` and write the report into ``out``; returns it."""
    if not preds:
        raise ConfigError("pred: give at least one predicted episode directory")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = {}
    for name, pred in zip(_names(preds, names), preds):
        print(f"evaluating {name} ({pred})")
        reports[name] = evaluate_prediction(gt, pred, config, observe_until)
    first = next(iter(reports.values()))
    report = {"ground_truth": str(gt), "opr_all": first["opr_all"], "opr_rgb": first["opr_rgb"],
              "predictions": reports}
    atomic_write_text(out_dir / "report.json", json.dumps(jsonable(report), indent=1, allow_nan=False))
    atomic_write_text(out_dir / "report.md", markdown(reports))
    plot_permanence(reports, out_dir / "permanence.png")
    plot_drift(reports, out_dir / "drift.png")
    return report

"""A parity run's report: metrics and agreement per backend from the cache, as parity.json, Markdown and a PNG.

With --rendered on the full mini set the metrics are checked against ../shared/golden/decode_mini.json;
with a zoo checkpoint on another COCO tree the checkpoint's published numbers stand beside the measured ones.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from benchmarks.coco import METRICS, MMPOSE_NAMES, REPO, CocoSet, evaluate
from benchmarks.parity_agreement import agreement
from benchmarks.parity_cache import load_results
from benchmarks.parity_identity import REFERENCE
from benchmarks.parity_plan import BackendRun

GOLDEN_DECODE = REPO.parent / "shared" / "golden" / "decode_mini.json"
SPEC = REPO.parent / "shared" / "SPEC.md"
GOLDEN_TOLERANCE = 1e-9


def coco_list(results: dict[int, dict]) -> list[dict]:
    return [{"image_id": image_id, "category_id": 1, "keypoints": p["keypoints"], "score": p["score"]}
            for image_id, entry in results.items() for p in entry["people"]]


def golden_check(rows: list[dict]) -> dict:
    """Every run's ten metrics against decode_mini.json's: the largest |difference| per backend.

    ``ok`` is the reference's verdict: the torch decode must reproduce mmpose's numbers. Another
    backend's decode can take other decisions at exact float32 ties of the maps (equal top-k values
    in another order, an NMS plateau split by a rounding difference), so its difference is reported.
    """
    golden = json.loads(GOLDEN_DECODE.read_text())["metrics"]
    expected = {ours: float(golden[theirs]) for ours, theirs in zip(METRICS, MMPOSE_NAMES)}
    worst = {row["name"]: max(abs(row["metrics"][m] - expected[m]) for m in METRICS)
             for row in rows if row["status"] == "run"}
    return {"file": "golden/decode_mini.json", "expected": expected, "tolerance": GOLDEN_TOLERANCE,
            "max_abs_diff": worst, "ok": worst[REFERENCE] <= GOLDEN_TOLERANCE}


def published_numbers(args: argparse.Namespace, is_mini: bool, measured: dict[str, float]) -> dict | None:
    if args.rendered or is_mini:
        return None
    from export.zoo import MULTISCALE_SCALES, ZOO

    entry = ZOO.get(args.checkpoint)
    if entry is None or entry.arch != args.arch or entry.input_size != args.input_size:
        return None
    if tuple(args.scales) == (1.0,):
        names = {m: m for m in ("AP", "AP50", "AP75", "AR", "AR50")}
    elif tuple(args.scales) == tuple(float(s) for s in MULTISCALE_SCALES):
        names = {"AP": "AP_ms"}
    else:
        return None
    rows = {m: {"published": float(entry.metrics[p]), "measured": measured[m],
                "delta": measured[m] - float(entry.metrics[p])} for m, p in names.items()}
    return {"checkpoint": entry.name, "metrics": rows,
            "note": "published numbers come from the original code / mmpose <= 0.18; SPEC section 13 lists the differences"}


def _number(value, digits: int = 3, signed: bool = False) -> str:
    """A table cell: ``digits`` decimals (with the sign when ``signed``), "–" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    lines = [f"### Parity: {report['title']}", "",
             "| backend | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for row in report["backends"]:
        if row["status"] != "run":
            continue
        cells = [_number(row["metrics"][m]) + ("" if row["name"] == REFERENCE else f" ({_number(row['delta'][m], signed=True)})")
                 for m in METRICS]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    lines += ["", "| backend | identical images | median px | p95 px | mean OKS | matched | missed | added | images/s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["backends"]:
        if row["status"] != "run":
            continue
        speed = _number(row["speed"]["images_per_s"], 2)
        if row["name"] == REFERENCE:
            lines.append(f"| {row['name']} | (reference) | | | | | | | {speed} |")
            continue
        a = row["agreement"]
        lines.append(f"| {row['name']} | {a['identical_images']}/{a['images']} ({_number(a['identical_pct'], 1)} %) | "
                     f"{_number(a['median_px'], 4)} | {_number(a['p95_px'], 4)} | {_number(a['mean_oks'], 4)} | {a['matched']} | "
                     f"{a['missed']} | {a['added']} | {speed} |")
    notes = [f"- {row['name']}: {row['note']}" for row in report["backends"] if row["status"] == "run" and row["note"]]
    notes += [f"- {row['name']}: {row['status']}: {row['reason']}" for row in report["backends"] if row["status"] != "run"]
    if notes:
        lines += [""] + notes
    if report.get("golden"):
        g = report["golden"]
        lines += ["", f"golden {g['file']}, max |diff| over the ten metrics:"]
        lines += [f"- {name}: {diff:.3g} ({'equal to' if diff <= g['tolerance'] else 'DIFFERENT beyond'} {g['tolerance']:g})"
                  for name, diff in g["max_abs_diff"].items()]
    if report.get("published"):
        p = report["published"]
        lines += ["", f"Published numbers of {p['checkpoint']} beside the measured torch ones:", "",
                  "| metric | published | measured | delta |", "|---|---:|---:|---:|"]
        lines += [f"| {m} | {r['published']:.3f} | {r['measured']:.3f} | {r['delta']:+.3f} |" for m, r in p["metrics"].items()]
        lines += ["", f"Differences: see SPEC §13 ({SPEC}) — the published numbers come from older code."]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in report["backends"] if row["status"] == "run"]
    names = [row["name"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    aps = [row["metrics"]["AP"] for row in rows]
    bars = left.bar(names, aps, color="tab:blue")
    left.bar_label(bars, labels=[f"{ap:.3f}" for ap in aps])
    left.set_title("COCO AP")
    left.set_ylim(0, 1.05)
    x = np.arange(len(names))
    identical = [100.0 if row["name"] == REFERENCE else (row["agreement"]["identical_pct"] or 0.0) for row in rows]
    oks = [100.0 if row["name"] == REFERENCE else 100.0 * (row["agreement"]["mean_oks"] or 0.0) for row in rows]
    right.bar(x - 0.2, identical, 0.4, label="identical images %")
    right.bar(x + 0.2, oks, 0.4, label="mean OKS x 100")
    right.set_xticks(x, names)
    right.set_ylim(0, 105)
    right.set_title("agreement with torch")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    figure.suptitle(report["title"])
    figure.tight_layout()
    from io import BytesIO

    from runtime.files import write_atomic

    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def build_report(backend_runs: list[BackendRun], args: argparse.Namespace, coco: CocoSet, images: list, is_mini: bool) -> dict:
    results = {backend_run.name: load_results(backend_run.name, backend_run.key, args.out, images)
               for backend_run in backend_runs if backend_run.status == "run"}
    reference = results[REFERENCE]
    ids = [im.id for im in images]
    rows, ref_metrics = [], None
    for backend_run in backend_runs:
        model = str(backend_run.model.relative_to(args.out)) if backend_run.model else None
        row = {"name": backend_run.name, "status": backend_run.status, "reason": backend_run.reason,
               "note": backend_run.note, "key": backend_run.key or None, "model": model}
        if backend_run.status == "run":
            mine = results[backend_run.name]
            metrics = evaluate(coco.ann, coco_list(mine), ids)
            ref_metrics = ref_metrics or metrics
            seconds = sum(entry["seconds"] for entry in mine.values())
            row.update(metrics=metrics, delta={m: metrics[m] - ref_metrics[m] for m in METRICS},
                       people=sum(len(entry["people"]) for entry in mine.values()),
                       agreement=None if backend_run.name == REFERENCE else agreement(reference, mine),
                       speed={"images_per_s": len(mine) / seconds if seconds > 0 else None,
                              "seconds_per_image": seconds / len(mine) if mine else None,
                              "what": "render + decode + grouping" if args.rendered else "read + warp + graph + grouping"})
        rows.append(row)
    mode = "GT-rendered network outputs" if args.rendered else \
        f"HigherHRNet-{args.arch.upper()} {args.input_size}, {args.checkpoint}, scales {','.join(f'{s:g}' for s in args.scales)}"
    mode += ", no refine" if args.no_refine else ""
    report = {"tool": "benchmarks/parity.py", "title": f"{mode}, {len(images)} images",
              "settings": {"rendered": args.rendered, "arch": args.arch, "input_size": args.input_size,
                           "checkpoint": args.checkpoint, "scales": list(args.scales), "limit": args.limit,
                           "calib_images": args.calib_images, "refine": not args.no_refine},
              "dataset": {"ann": coco.ann.name, "images": len(images), "mini_set": is_mini},
              "reference": REFERENCE, "backends": rows, "golden": None, "published": None}
    if args.rendered and is_mini and len(images) == len(coco.images) and GOLDEN_DECODE.is_file() \
            and not args.no_refine:  # the golden is the reference's decode with refine
        report["golden"] = golden_check(rows)
    report["published"] = published_numbers(args, is_mini, ref_metrics)
    return report

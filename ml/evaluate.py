"""Evaluate an artifact on data, at patch and at whole-image level, and write its figures.

    python -m ml.evaluate --artifact models/custom_cnn-mias-abnormal-v1 \
        --data ../shared/data/mini-mias --out runs/eval [--write-evidence]

Layouts: a mini-MIAS-like folder (``images/`` + ``labels.csv``), a DDSM folder (TFRecords
and/or ``*_data.npy`` pairs) or a single ``*_data.npy`` file. On the mini-MIAS folder the
artifact was trained on, only its test patients are evaluated; on any other mini-MIAS
folder every film is (``--split auto``, the default).

On mini-MIAS it also measures what the app may show (``ml.evidence``): film AUC with a CI
over women, calibration, exam-score deciles and bands fitted on the validation women (only
on the artifact's own folder with the test split: anywhere else the validation women are
not apart from the films the AUC is reported on, so nothing is fitted, and it says why),
the heat-map randomisation test against a brightest-spot baseline and ten random copies,
and the FROC of the region marks, each with its per-film hits and its verdict under the
default gates. ``--write-evidence`` records them in the artifact's manifest and model card.

This module is the command only: the figures are ``ml.evaluation``'s, the evidence
``ml.evidence_measurement``'s, the held-out films ``ml.selection``'s.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from ml.artifacts import DEFAULT_ARTIFACT
from ml.data import is_mias_folder
from ml.evaluation import evaluate_artifact
from ml.evidence_measurement import RANDOM_SEEDS, write_evidence
from ml.model_card import format_auc
from ml.selection import SplitError


def _print_block(name: str, m: dict[str, Any]) -> None:
    print(f"\n== {name}: AUC {format_auc(m)}")
    for label, key in (("chosen threshold", "at_threshold"), ("threshold 0.5", "at_0_5")):
        r = m[key]
        print(
            f"  {label} {r['threshold']:.3f}: acc {r['accuracy']:.3f} prec {r['precision']:.3f} "
            f"rec {r['recall']:.3f} f1 {r['f1']:.3f} spec {r['specificity']:.3f} "
            f"cm {r['confusion_matrix']}"
        )
    print(m["at_threshold"]["classification_report"])


def _print_evidence(ev: dict[str, Any], seconds: float) -> None:
    hm, mk = ev["heatmap"], ev["marks"]
    print(f"\n== evidence ({seconds:.0f} s) on {ev['data']}")
    print(f"  triage: {ev['triage']['reason']}")
    print(f"  heat map: {hm['reason']}")
    print(f"  marks: {mk['reason']}")
    if b := ev.get("bands"):
        print(
            f"  bands (fitted on {b['films']} validation films): intermediate from "
            f"{b['intermediate_from']:.3f}, high from {b['high_from']:.3f}"
        )
    else:
        print(f"  calibration, exam score, bands: {ev['calibration_not_fitted']}")


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(prog="python -m ml.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--artifact", default=None, help="artifact directory (default: shipped)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="runs/eval")
    p.add_argument(
        "--split",
        choices=("auto", "test", "val", "all"),
        default="auto",
        help="auto: the artifact's test women on its own mini-MIAS folder, else all films",
    )
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument(
        "--write-evidence",
        action="store_true",
        help="write the evidence block into the artifact's manifest.json and MODEL_CARD.md",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=list(RANDOM_SEEDS))
    p.add_argument(
        "--max-lesion-films", type=int, default=None, help="cap the randomisation test's films"
    )
    a = p.parse_args(argv)
    if a.write_evidence and not is_mias_folder(a.data):
        p.error("--write-evidence needs a mini-MIAS-layout folder (whole films with lesions)")
    artifact = a.artifact or DEFAULT_ARTIFACT
    started = time.perf_counter()
    try:
        result = evaluate_artifact(
            artifact,
            a.data,
            a.out,
            a.split,
            a.bootstrap,
            seeds=a.seeds,
            max_lesion_films=a.max_lesion_films,
        )
    except SplitError as exc:
        p.error(str(exc))
    _print_block("patch level", result["patch"])
    if "image" in result:
        _print_block("whole-image level", result["image"])
        loc = result["image"]["localisation"]
        print(
            f"seconds per film {result['image']['seconds_per_film']:.2f}; heatmap peak in "
            f"lesion {loc['peak_in_lesion']:.2f} vs random {loc['random_point_in_lesion']:.2f} "
            f"({loc['films']} films)"
        )
    if "evidence" in result:
        _print_evidence(result["evidence"], result["evidence_seconds"])
        if a.write_evidence:
            write_evidence(artifact, result["evidence"])
            print(f"evidence written to {artifact}")
    print(f"figures written to {a.out}; {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()

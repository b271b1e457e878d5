"""The artifact's MODEL_CARD.md, rendered from its manifest alone so it cannot drift.

Every figure on the card (data, split, patch and film results, the evidence verdicts, the
attempts, training, limitations) is read from ``manifest.json``; hand-written lineage notes
survive a re-render (``kept_notes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml.data import patient_of
from ml.evidence import (
    band_description,
    heatmap_gate,
    heatmap_rule,
    marks_gate,
    marks_rule,
    triage_gate,
    triage_rule,
)


def format_auc(m: dict[str, Any]) -> str:
    """An AUC with its 95 % CI, as the card and the evaluate command print it."""
    lo, hi = m.get("auc_ci95", [float("nan")] * 2)
    return f"{m['auc']:.3f} (95% CI {lo:.3f}–{hi:.3f})"


def _row(name: str, m: dict[str, Any]) -> str:
    return (
        f"| {name} | {m['threshold']:.3f} | {m['sensitivity']:.3f} | {m['specificity']:.3f} "
        f"| {m['precision']:.3f} | {m['f1']:.3f} | {m['accuracy']:.3f} | {m['confusion_matrix']} |"
    )


_TABLE_HEAD = [
    "| operating point | threshold | sensitivity | specificity | precision | F1 | "
    "accuracy | confusion [[TN, FP], [FN, TP]] |",
    "|---|---|---|---|---|---|---|---|",
]


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _model_section(manifest: Any) -> list[str]:
    pre = manifest.preprocessing
    resized = (
        f", resized inside the model to {pre['internal_size']}×{pre['internal_size']}"
        if pre.get("internal_size")
        else ""
    )
    target = (
        "(any finding: label ≠ 0)."
        if manifest.target == "abnormal"
        else "(malignant: label 3 or 4)."
    )
    return [
        "## Model",
        f"- Architecture: `{manifest.architecture}` (ml/models.py), one sigmoid output.",
        f"- Input: {manifest.input_size}×{manifest.input_size}×3, grayscale replicated to three "
        f"channels, preprocessing `{pre.get('method')}`{resized}.",
        f"- Target: `{manifest.target}` {target}",
        f"- Created {manifest.created}; sha256 of the model file `{manifest.sha256}`.",
    ]


def _mias_data(td: dict[str, Any]) -> list[str]:
    p = td["patches"]
    lines = [
        f"- Split by patient ({td['split_unit']}): {td['patients']} women in train / "
        f"validation / test (split seed {td['split']['seed']}).",
        f"- Patches {p['patch_size']}×{p['patch_size']} at the films' native 0.2 mm scale: "
        f"{p['lesion_crops']} crops per annotated lesion with up to ±{p['jitter']} px "
        f"jitter, {p['normal_tiles_per_film']} normal tiles per film from inside the breast "
        f"(≥{p['min_breast_fraction']:.0%} breast, clear of lesions). Films whose finding "
        "has no coordinates give no patches.",
        "- Patch counts (labels normal, benign calc, benign mass, malignant calc, malignant "
        "mass): "
        + "; ".join(f"{k} {v['total']} {v['by_label']}" for k, v in td["patch_counts"].items())
        + ".",
    ]
    if hard := td.get("hard_negatives"):
        lines.append(
            f"- Hard negatives: {hard['added']} more normal training patches, the "
            f"{hard['per_film']} normal grid tiles per training film that `{hard['from']}` "
            "scored highest (validation and test sets untouched)."
        )
    return lines


def _ddsm_data(td: dict[str, Any]) -> list[str]:
    records = td.get("train_records", [])
    return [
        f"- Training: {td.get('train_count', 'n/a')} patches from {len(records)} TFRecord "
        f"file(s) ({', '.join(records)}); validation `{td.get('validation')}`, test "
        f"`{td.get('test')}` (the data set's own split, by patch: the Kaggle files do not "
        "say which woman a patch comes from).",
    ]


def _data_section(td: dict[str, Any]) -> list[str]:
    lines = ["## Data and split", f"- {td.get('source', 'unknown source')}."]
    if td.get("path"):
        lines.append(f"- Read from `{td['path']}` (layout `{td.get('layout', 'unknown')}`).")
    if td.get("layout") == "mini-mias":
        lines += _mias_data(td)
    elif td.get("layout") == "ddsm":
        lines += _ddsm_data(td)
    return lines


def _patch_section(patch: dict[str, Any]) -> list[str]:
    if not patch:
        return []
    t = patch["test"]
    return [
        "## Patch-level results (test split, never seen in training or model selection)",
        f"- AUC {format_auc(t)}; bootstrap resamples whole {patch['bootstrap_unit']}s.",
        f"- Validation AUC {format_auc(patch['validation'])}.",
        f"- Threshold {patch['threshold']:.3f}, chosen on validation patches for "
        f"sensitivity ≥ {patch['target_sensitivity']:.2f} (a screening choice).",
        "",
        *_TABLE_HEAD,
        _row("validation-chosen", t["at_threshold"]),
        _row("0.5", t["at_0_5"]),
    ]


def _image_section(
    image: dict[str, Any] | None,
    pre: dict[str, Any],
    heatmap: dict[str, Any] | None = None,
    test_patients: Sequence[int] = (),
) -> list[str]:
    if not image:
        return []
    t = image["test"]
    loc = t["localisation"]
    return [
        "## Whole-film results (test-split films)",
        "- One held-out split, not cross-validated: these figures are not the project's "
        "cross-validation estimator (see Attempts and docs/cross-validation.md).",
        f"- {image['test_films']} films; image score = {image['aggregation']} of the "
        f"patch probabilities over a {pre.get('patch_size')} px grid, stride "
        f"{pre.get('stride')} px, inside the breast.",
        f"- AUC {format_auc(t)} (bootstrap over women); validation films AUC "
        f"{image['validation']['auc']:.3f}.",
        f"- Threshold {image['threshold']:.3f} chosen on validation films.",
        "",
        *_TABLE_HEAD,
        _row("validation-chosen", t["at_threshold"]),
        _row("0.5", t["at_0_5"]),
        "",
        f"- Seconds per 1024×1024 film on the training CPU (2 cores, score and Grad-CAM): "
        f"{t['seconds_per_film']:.2f}, under whatever load the shared machine had then (not "
        "recorded; other jobs can slow it by 2× or more).",
        _localisation_line(loc, heatmap or {}, test_patients),
    ]


def _localisation_line(
    loc: dict[str, Any], hm: dict[str, Any], test_patients: Sequence[int]
) -> str:
    """The test films' localisation, against the baselines a map must beat, on the same films.

    A random point (3 % for the shipped model) is the weakest comparison there is; the
    brightest point of the film and networks with random weights are the ones the heatmap
    gate uses, so the headline carries them, read from the evidence's per-film hits.
    """
    line = (
        f"- Localisation: on {loc['films']} test films with an annotated lesion the "
        f"heatmap peak fell inside a lesion circle in {loc['peak_in_lesion']:.0%} of films; "
        f"a random point inside the breast would in {loc['random_point_in_lesion']:.0%}"
    )
    test = set(test_patients)
    keep = [i for i, ref in enumerate(hm.get("film_refs", [])) if patient_of(ref) in test]
    if not keep or "baseline_hits" not in hm:
        return line + (
            ". No brightest-point or random-weight comparison was measured, so this says "
            "nothing about whether the map localises better than the film's own brightness."
        )
    random = [np.mean([hits[i] for i in keep]) for hits in hm["random_weights"]["hits"]]
    trained = float(np.mean([hm["trained_hits"][i] for i in keep]))
    brightest = float(np.mean([hm["baseline_hits"][i] for i in keep]))
    beaten = [
        name
        for name, x in (("brightest point", brightest), ("best random copy", max(random)))
        if trained <= x
    ]
    plain = (
        f"no better than the {' or the '.join(beaten)}"
        if beaten
        else "above both, on too few films to tell (the gate's paired tests decide)"
    )
    return line + (
        f". On {len(keep)} of these films the evidence also scored the brightest point of the "
        f"smoothed film ({brightest:.0%}) and the same network with random weights "
        f"({min(random):.0%}–{max(random):.0%}, median {np.median(random):.0%}, "
        f"{len(random)} seeds), where the map scored {trained:.0%}: {plain}. The heat-map "
        "gate below judges this on all of the evidence's lesion films."
    )


def _training_section(
    manifest: Any, history: dict[str, list[float]] | None, notes: Sequence[str]
) -> list[str]:
    if not history or "val_auc" not in history:
        return []
    td, m = manifest.training_data, manifest.metrics
    key = "val_film_auc" if "val_film_auc" in history else "val_auc"
    what = "whole-film AUC" if key == "val_film_auc" else "patch AUC"
    best = int(np.argmax(history[key]))
    training = td.get("training", {})
    start = training.get("init_from")
    lines = [
        "## Training",
        f"- {len(history[key])} epochs, best validation {what} "
        f"{history[key][best]:.3f} at epoch {best + 1}"
        + (f" (continued from `{start}`)" if start else "")
        + "; Adam "
        f"(learning rate {training.get('learning_rate', 'n/a')}), binary "
        "cross-entropy, balanced class weights, flips/rotations/brightness/contrast "
        f"augmentation, best epoch kept by validation {what}.",
    ]
    if "train_seconds" in m:
        lines.append(
            f"- Training time: {m['train_seconds']:.0f} s on a shared 2-core CPU (load not "
            "recorded)."
        )
    return lines + list(notes)


def _verdict(ok: bool, yes: str, no: str) -> str:
    return f"**{yes}**" if ok else f"**{no}**"


def _fitted_on(part: dict[str, Any]) -> str:
    """Which films a fitted figure rests on, as the evidence records it."""
    if part.get("fitted_on") == "validation":
        women = f" of {part['women']} women" if "women" in part else ""
        return (
            f"fitted on {part['films']} validation films{women} (none of them among the films "
            "the AUC is reported on)"
        )
    return f"fitted on {part.get('films', 'an unrecorded number of')} films (which ones unrecorded)"


def _evidence_scores(ev: dict[str, Any]) -> list[str]:
    lines = []
    if fa := ev.get("film_auc"):
        lo, hi = fa["ci95"]
        abnormal = (
            f", {fa['abnormal_films']} abnormal and {fa['normal_films']} normal"
            if "abnormal_films" in fa
            else ""
        )
        lines.append(
            f"- Film AUC {fa['auc']:.3f} (95 % CI {lo:.3f}–{hi:.3f}) on {fa['films']} films "
            f"of {fa['women']} women{abnormal}; {fa['method']}."
        )
    if "triage" in ev or "film_auc" in ev:
        tr = triage_gate(ev)
        ok = _verdict(tr.passed, "validated", "not validated")
        lines.append(
            f"- Score for ranking cases (triage): {ok}. Rule: {triage_rule()} "
            f"Measured: {tr.figures}. {tr.reason}"
        )
    if reason := ev.get("calibration_not_fitted"):
        lines.append(f"- {reason}")
    if cal := ev.get("calibration"):
        pairs = ", ".join(
            f"{s:.3f} → {p:.2f}" for s, p in zip(cal["scores"], cal["probabilities"], strict=True)
        )
        lines.append(
            f"- Calibration ({cal['method']}, {_fitted_on(cal)}; score → share abnormal, "
            f"linear between points): {pairs}."
        )
    if es := ev.get("exam_score"):
        cuts = ", ".join(f"{c:.3f}" for c in es["cuts"])
        where = _fitted_on({"films": es["normal_films"], **es}).replace(
            "validation films", "validation normal films"
        )
        lines.append(
            f"- Exam score 1–10: one plus the number of deciles of the normal films the score "
            f"reaches, {where}; decile cuts {cuts}."
        )
    return lines


def _evidence_bands(bands: dict[str, Any]) -> list[str]:
    if not bands:
        return []
    ev = {"bands": bands}
    return [
        "",
        f"Bands, {_fitted_on(bands)}; the figures are for a score at or above the band's start:",
        "",
        "| band | from score | sensitivity | specificity | on validation films |",
        "|---|---|---|---|---|",
        f"| low | — | — | — | {band_description('low', ev)} |",
        f"| intermediate | {bands['intermediate_from']:.3f} | "
        f"{bands['intermediate']['sensitivity']:.2f} | "
        f"{bands['intermediate']['specificity']:.2f} | {band_description('intermediate', ev)} |",
        f"| high | {bands['high_from']:.3f} | {bands['high']['sensitivity']:.2f} | "
        f"{bands['high']['specificity']:.2f} | {band_description('high', ev)} |",
    ]


def _evidence_heatmap(hm: dict[str, Any]) -> list[str]:
    if not hm:
        return []
    rw = hm["random_weights"]
    lines = [
        "",
        f"Heat-map randomisation test (Adebayo et al. 2018) on {hm['films']} films with an "
        "annotated lesion: share of films whose heat-map peak lies inside a lesion circle, "
        "and the rank correlation (inside the breast) of each map with the trained one."
        + (f" Films: {', '.join(hm['film_refs'])}." if hm.get("film_refs") else ""),
        "",
        "| map | peak inside a lesion | rank correlation with trained map |",
        "|---|---|---|",
        f"| trained model (Grad-CAM × patch probability) | {_pct(hm['trained_peak_in_lesion'])} "
        "| 1 |",
        f"| brightest spot of the smoothed film (baseline) | "
        f"{_pct(hm['baseline_peak_in_lesion'])} | — |",
        f"| random point in the breast (expected) | {_pct(hm['random_point_in_lesion'])} | — |",
    ]
    lines += [
        f"| same network, random weights, seed {s} | {_pct(p)} | {c:.2f} |"
        for s, p, c in zip(rw["seeds"], rw["peak_in_lesion"], rw["rank_correlation"], strict=True)
    ]
    verdict = heatmap_gate({"heatmap": hm})
    ok = _verdict(verdict.passed, "passed", "failed")
    return lines + [
        "",
        f"- Heat map as localisation: {ok}. Rule: {heatmap_rule()} Measured: "
        f"{verdict.figures}. {verdict.reason}",
    ]


def _evidence_marks(mk: dict[str, Any]) -> list[str]:
    if not mk:
        return []
    fr = mk["froc"]
    base = mk.get("baseline_froc", {})
    lines = [
        "",
        f"Region marks (at most {mk['max_per_image']} per image; a hit when the mark's centre "
        f"lies inside a lesion circle) on {mk['films']} films with {mk['lesions']} lesions:",
        "",
        "| marks | sensitivity at 0.5 false marks / image | at 1 false mark / image |",
        "|---|---|---|",
        f"| model | {_pct(fr['sensitivity_at_0_5_fp'])} | {_pct(fr['sensitivity_at_1_fp'])} |",
    ]
    if base:
        lines.append(
            f"| brightest spots (baseline) | {_pct(base['sensitivity_at_0_5_fp'])} | "
            f"{_pct(base['sensitivity_at_1_fp'])} |"
        )
    verdict = marks_gate({"marks": mk})
    ok = _verdict(verdict.passed, "passed", "failed")
    return lines + [
        "",
        f"- Region marks: {ok}. Rule: {marks_rule()} Measured: {verdict.figures}. {verdict.reason}",
    ]


def _evidence_section(ev: dict[str, Any]) -> list[str]:
    if not ev:
        return []
    return [
        "## Evidence (what the app may show)",
        f"- Measured {ev.get('computed_at', '')} by `python -m ml.evaluate --write-evidence` on "
        f"{ev.get('data', 'unrecorded data')}. The app judges the recorded figures against "
        "its site's gates (ml/evidence.py holds the rules; the verdicts below are under the "
        "default gates, a site may only make them stricter) and shows a figure only where "
        "its gate passes.",
        *_evidence_scores(ev),
        *_evidence_bands(ev.get("bands", {})),
        *_evidence_heatmap(ev.get("heatmap", {})),
        *_evidence_marks(ev.get("marks", {})),
    ]


def _attempts_section(attempts: Sequence[dict[str, Any]]) -> list[str]:
    if not attempts:
        return []
    lines = [
        "## Attempts",
        "Recipes tried for this target, each by the project's one cross-validation "
        "estimator (docs/cross-validation.md): pooled out-of-fold film AUC over folds grouped "
        "by woman, mean over repeats, 95 % CI by bootstrap over women. These are not the "
        "single-split test figures above:",
        "",
        "| recipe | film AUC (95 % CI) | folds × repeats | notes |",
        "|---|---|---|---|",
    ]
    for a in attempts:
        lo, hi = a.get("ci95", [float("nan")] * 2)
        lines.append(
            f"| {a.get('recipe', '')} | {a.get('film_auc', float('nan')):.3f} "
            f"({lo:.3f}–{hi:.3f}) | {a.get('folds', '')} × {a.get('repeats', '')} "
            f"| {a.get('notes', '')} |"
        )
    return lines


def _figures_section(
    patch: dict[str, Any], image: dict[str, Any] | None, history: Any
) -> list[str]:
    plots = list(patch.get("test", {}).get("plots", []))
    if image:
        plots += image["test"].get("plots", [])
    if not plots and not history:
        return []
    names = (["training_curves.png"] if history else []) + plots
    return ["## Figures", "", *[f"![{name}]({name})" for name in names]]


def _limitations_section(td: dict[str, Any]) -> list[str]:
    layout = td.get("layout")
    if layout == "mini-mias":
        data = [
            "- mini-MIAS is small (a few hundred patches from fewer than a hundred women for "
            "training), digitised film from the 1990s, and the test split is a few dozen women:",
            "  the confidence intervals are wide and the figures do not transfer to digital",
            "  mammography, other populations or other scanners.",
            "- Normal tiles are drawn from inside the breast, lesion crops are centred on",
            "  annotated lesions: the patch task is easier than finding a lesion in a whole film.",
        ]
    elif layout == "ddsm":
        data = [
            "- The Kaggle DDSM patches are 299×299 crops of digitised film (CBIS-DDSM): patch",
            "  figures say nothing about finding a lesion in a whole film, and the files carry",
            "  no patient identity, so the split is by patch and the CIs are optimistic.",
            "- Film from the 1990s: the figures do not transfer to digital mammography, other",
            "  populations or other scanners.",
        ]
    else:
        data = ["- The training data are described only as above; judge transfer accordingly."]
    return [
        "## Limitations",
        *data,
        "- Trained on a CPU at reduced internal resolution; not comparable to GPU-trained",
        "  VGG16/ResNet50V2 figures on DDSM.",
    ]


def model_card(
    manifest: Any, history: dict[str, list[float]] | None = None, notes: Sequence[str] = ()
) -> str:
    """The artifact's MODEL_CARD.md, rendered from its manifest alone so it cannot drift.

    ``notes`` are hand-written lines kept under Training (e.g. the artifact's lineage).
    """
    m = manifest.metrics
    td = manifest.training_data
    evidence = getattr(manifest, "evidence", None) or {}
    sections = [
        [
            f"# Model card: {manifest.architecture}, target `{manifest.target}`, "
            f"v{manifest.version}",
            "",
            "**For research only. Not a medical device and not for clinical use.** It has not been",
            "validated on any population, and its figures come from a small public film data set.",
        ],
        _model_section(manifest),
        _data_section(td),
        _patch_section(m.get("patch", {})),
        _image_section(
            m.get("image"),
            manifest.preprocessing,
            evidence.get("heatmap"),
            td.get("test_patients", []),
        ),
        _evidence_section(evidence),
        _attempts_section(evidence.get("attempts", [])),
        _training_section(manifest, history, notes),
        _figures_section(m.get("patch", {}), m.get("image"), history),
        _limitations_section(td),
    ]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"


def kept_notes(card: str) -> list[str]:
    """Hand-written "- Lineage:" bullets of an existing card, kept when it is re-rendered."""
    lines = card.splitlines()
    kept: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("- Lineage:"):
            kept.append(line)
            for cont in lines[i + 1 :]:
                if not cont.startswith("  "):
                    break
                kept.append(cont)
    return kept

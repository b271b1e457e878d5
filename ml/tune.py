"""Optuna search over a recipe's hyperparameters, nested inside woman-grouped folds.

    python -m ml.tune --name tune-cnn --trials 20 --folds 5 --inner-folds 3 \\
        --internal-size 150 --epochs 6 --steps-per-epoch 30 --select-on films

A search that scores its candidates on the films it then reports flatters the winner. Here
the women are cut into outer folds (as ``ml.crossval`` cuts them); in each outer fold an
Optuna study searches ``SEARCH_SPACE``, every trial scored by the pooled out-of-fold film
AUC of an inner cross-validation over *that fold's training women only*. The best trial's
configuration is then trained on all of the fold's training women and scores its test
women. The outer scores, pooled (``ml.metrics.pooled_oof_auc``), estimate the whole
procedure, search included. ``--final-study`` runs one more study over every woman to pick
the configuration to ship; its score is a selection figure, not an estimate.

Writes ``runs/<name>/optuna.db`` (the Optuna SQLite storage, one study per outer fold and
``final``), ``trials.json`` (every trial: study, parameters, inner AUC, state),
``tune.json`` (the nested estimate, each outer fold's choice) and ``oof.csv``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ml.config import CrossValConfig, TuneConfig
from ml.crossval import fit_and_score, load_film_patches, write_oof
from ml.crossval import parse_args as crossval_args
from ml.data import hold_out_patients, patient_folds, read_mias
from ml.metrics import pooled_oof_auc

# What a trial may change in the recipe: name -> (kind, choices or (low, high)).
SEARCH_SPACE: dict[str, tuple[str, Any]] = {
    "learning_rate": ("log_float", (1e-5, 3e-3)),
    "batch_size": ("categorical", (16, 32, 64)),
    "normal_tiles_per_film": ("categorical", (4, 6, 12, 24)),
    "augment": ("categorical", (True, False)),
    "class_weights": ("categorical", (True, False)),
}


def suggest(trial: Any) -> dict[str, Any]:
    """One trial's hyperparameters, drawn from ``SEARCH_SPACE`` by the study's sampler."""
    params = {}
    for name, (kind, space) in SEARCH_SPACE.items():
        if kind == "log_float":
            params[name] = trial.suggest_float(name, *space, log=True)
        else:
            params[name] = trial.suggest_categorical(name, list(space))
    return params


def with_params(cv: CrossValConfig, params: dict[str, Any]) -> CrossValConfig:
    """The base recipe with a trial's hyperparameters in place."""
    cv = copy.deepcopy(cv)
    train = cv.train
    patches = {k: v for k, v in params.items() if hasattr(train.patches, k)}
    rest = {k: v for k, v in params.items() if k not in patches}
    cv.train = dataclasses.replace(
        train, patches=dataclasses.replace(train.patches, **patches), **rest
    )
    return cv


def cross_validated_auc(
    cv: CrossValConfig, films: list[Any], women: list[int], k: int, seed: int, out: Path
) -> float:
    """Pooled out-of-fold film AUC of ``cv`` over ``women`` alone, in ``k`` grouped folds.

    The models are thrown away: only the figure is needed to compare candidates.
    """
    chosen = set(women)
    pool = [f for f in films if f.patient in chosen]
    patches = load_film_patches(cv.train)
    rows: list[dict[str, Any]] = []
    for i, test in enumerate(patient_folds(pool, k, seed)):
        rest = [p for p in women if p not in set(test)]
        split = hold_out_patients(pool, rest, cv.val_fraction, seed * 100 + i)
        split["test"] = test
        description = {"source": "mini-MIAS", "inner_fold": i, "split": split}
        _, _, _, scored = fit_and_score(cv, patches, pool, split, out / f"i{i}", description)
        rows += [{**r, "repeat": 0, "fold": i} for r in scored]
    shutil.rmtree(out, ignore_errors=True)
    return float(pooled_oof_auc(rows, "score", n_boot=0)["auc"])


def search(tune: TuneConfig, films: list[Any], women: list[int], study_name: str, seed: int) -> Any:
    """One Optuna study over ``women`` only, stored in the run directory's SQLite file."""
    import optuna

    root = Path(tune.cv.train.out_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=f"sqlite:///{(root / 'optuna.db').resolve()}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=tune.sampler_seed + seed),
        load_if_exists=False,
    )
    study.set_user_attr("women", sorted(women))  # whom every trial of it trained and scored on

    def objective(trial: Any) -> float:
        cv = with_params(tune.cv, suggest(trial))
        out = root / "inner" / study_name / f"t{trial.number}"
        # NaN (an inner fold of one class) marks the trial failed, never best
        return cross_validated_auc(cv, films, women, tune.inner_folds, seed, out)

    study.optimize(objective, n_trials=tune.trials)
    return study


def best_params(study: Any) -> dict[str, Any] | None:
    """The best completed trial's parameters; None when every trial failed."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return dict(max(done, key=lambda t: t.value).params) if done else None


def trial_rows(study: Any) -> list[dict[str, Any]]:
    return [
        {
            "study": study.study_name,
            "trial": t.number,
            "params": t.params,
            "inner_film_auc": t.value,
            "state": t.state.name,
        }
        for t in study.trials
    ]


def run_tune(tune: TuneConfig) -> dict[str, Any]:
    """The nested search: a study per outer fold, the chosen recipe scored on its test women."""
    cv = tune.cv
    root = Path(cv.train.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "optuna.db").unlink(missing_ok=True)  # a rerun starts its studies afresh
    (root / "config.json").write_text(json.dumps(tune.to_dict(), indent=2) + "\n")
    started = time.time()
    films = read_mias(cv.train.data)
    rows: list[dict[str, Any]] = []
    outer: list[dict[str, Any]] = []
    trials: list[dict[str, Any]] = []
    for r in range(cv.repeats):
        folds = patient_folds(films, cv.folds, cv.seed + r)
        for i, test in enumerate(folds):
            rest = [p for j, fold in enumerate(folds) if j != i for p in fold]
            study = search(tune, films, rest, f"outer-r{r}f{i}", cv.seed + r * 100 + i)
            trials += trial_rows(study)
            params = best_params(study)
            chosen = with_params(cv, params or {})
            split = hold_out_patients(films, rest, cv.val_fraction, cv.seed + r * 100 + i)
            split["test"] = test
            description = {"source": "mini-MIAS", "fold": i, "repeat": r, "split": split}
            _, _, _, scored = fit_and_score(
                chosen,
                load_film_patches(chosen.train),
                films,
                split,
                root / f"r{r}f{i}",
                description,
            )
            shutil.rmtree(root / f"r{r}f{i}", ignore_errors=True)
            rows += [{**row, "repeat": r, "fold": i} for row in scored]
            outer.append(
                {
                    "repeat": r,
                    "fold": i,
                    "test_women": test,
                    "params": params,
                    "inner_film_auc": study.best_value if params else None,
                    "note": None if params else "every trial failed: the base recipe was used",
                }
            )
    summary: dict[str, Any] = {
        "recipe": cv.recipe,
        "search_space": {k: list(v[1]) for k, v in SEARCH_SPACE.items()},
        "trials_per_study": tune.trials,
        "folds": cv.folds,
        "inner_folds": tune.inner_folds,
        "repeats": cv.repeats,
        "nested_film_auc": pooled_oof_auc(rows, "score", cv.train.bootstrap),
        "outer_folds": outer,
    }
    if tune.final_study:
        study = search(tune, films, sorted({f.patient for f in films}), "final", cv.seed)
        trials += trial_rows(study)
        summary["final"] = {
            "params": best_params(study),
            "selection_film_auc": study.best_value if best_params(study) else None,
            "note": "chosen on every woman: a selection figure, optimistic, not an estimate",
        }
    summary["seconds"] = round(time.time() - started, 1)
    write_oof(rows, root / "oof.csv")
    (root / "trials.json").write_text(json.dumps(trials, indent=2) + "\n")
    (root / "tune.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(root / "inner", ignore_errors=True)
    return summary


def summary_line(summary: dict[str, Any], name: str) -> str:
    film = summary["nested_film_auc"]
    lo, hi = film["ci95"]
    line = (
        f"{name}: nested film AUC, pooled out-of-fold {film['auc']:.3f} (95% CI {lo:.3f}-"
        f"{hi:.3f}), {summary['folds']} outer x {summary['inner_folds']} inner folds x "
        f"{summary['repeats']}, {summary['trials_per_study']} trials per study"
    )
    if final := summary.get("final"):
        line += f"; configuration to ship (chosen on every woman): {final['params']}"
    return line


def parse_args(argv: list[str] | None = None) -> TuneConfig:
    """Search options; every other option is ``python -m ml.crossval``'s (the base recipe)."""
    p = argparse.ArgumentParser(prog="python -m ml.tune", description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=20, help="trials per study")
    p.add_argument("--inner-folds", type=int, default=3)
    p.add_argument("--final-study", action="store_true")
    p.add_argument("--sampler-seed", type=int, default=0)
    a, rest = p.parse_known_args(argv)
    return TuneConfig(
        cv=crossval_args(rest),
        trials=a.trials,
        inner_folds=a.inner_folds,
        final_study=a.final_study,
        sampler_seed=a.sampler_seed,
    )


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tune = parse_args(argv)
    summary = run_tune(tune)
    print(summary_line(summary, Path(tune.cv.train.out_dir).name))


if __name__ == "__main__":
    main()

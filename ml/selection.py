"""Which films an artifact is measured on, so a held-out figure is held out.

On the mini-MIAS folder the artifact was trained on, its test women are the held-out films
and its validation women are where calibration, exam-score deciles and bands are fitted; on
any other folder every film is unseen, and none is set apart for fitting, so nothing is
fitted there (a fit on the films an AUC is reported on would describe those films, not the
next woman's). Judged from the manifest's patient lists, not from the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class SplitError(ValueError):
    """The requested split does not exist on this folder."""


@dataclass
class FilmSelection:
    """Films for the held-out figures and films the calibration and bands are fitted on."""

    split: str
    evaluate: list[Any]
    fit: list[Any]
    held_out: bool  # the evaluated films played no part in training or model selection
    method: str
    description: str

    @property
    def scored(self) -> list[Any]:
        seen = {f.refnum for f in self.evaluate}
        return list(self.evaluate) + [f for f in self.fit if f.refnum not in seen]

    @property
    def calibration_films(self) -> list[Any]:
        """The validation films calibration, deciles and bands may be fitted on: none of
        their women is among those the AUC is reported on."""
        evaluated = {f.patient for f in self.evaluate}
        return [f for f in self.fit if f.patient not in evaluated]

    @property
    def no_calibration_reason(self) -> str:
        """Why nothing is fitted ('' when the validation films allow a fit)."""
        if self.calibration_films:
            return ""
        if not self.fit:
            return (
                "Calibration, exam-score deciles and bands are not fitted: this folder is not "
                "the one the artifact was trained on, so it has no validation women set apart "
                "from the films the AUC is reported on, and a fit on those same films would "
                "describe them, not the next woman's."
            )
        return (
            "Calibration, exam-score deciles and bands are not fitted: the validation women "
            f"are among the films the AUC is reported on (--split {self.split}), and a fit "
            "on those same films would describe them, not the next woman's; use --split test."
        )


def trained_on(manifest: Any, films: Sequence[Any]) -> bool:
    """Is this mini-MIAS folder the one the artifact's patient split was drawn from?

    Judged by the data, not the path: the artifact's validation and test women must all be
    present and the number of women must match the training description.
    """
    td = manifest.training_data
    val, test = td.get("val_patients"), td.get("test_patients")
    if td.get("layout") != "mini-mias" or not val or not test:
        return False
    present = {f.patient for f in films}
    total = sum(td.get("patients", {}).values())
    return set(val) | set(test) <= present and (not total or total == len(present))


def _women(films: Sequence[Any]) -> int:
    return len({f.patient for f in films})


def select_films(manifest: Any, films: Sequence[Any], split: str = "auto") -> FilmSelection:
    """``auto``: the artifact's test women on the folder it was trained on, else all films.

    ``test`` and ``val`` need the artifact's own folder: on another folder the patient
    numbers name other women, so asking for them is an error, not a silent wrong pick.
    """
    known = trained_on(manifest, films)
    if split == "auto":
        split = "test" if known else "all"
    if split in ("test", "val") and not known:
        raise SplitError(
            f"--split {split}: this folder is not the one the artifact was trained on "
            "(its patient lists do not match), so it has no such split; use auto or all"
        )
    films = list(films)
    td = manifest.training_data
    if not known:
        return FilmSelection(
            split,
            films,
            [],
            held_out=True,
            method="all films of a folder the artifact was not trained on, "
            "95 % CI by bootstrap over women",
            description=f"mini-MIAS-layout folder, all {len(films)} films of {_women(films)} "
            "women, none used in training; film AUC, heat map and marks on all of them; no "
            "calibration, exam score or bands (no validation films apart from these)",
        )
    val = [f for f in films if f.patient in set(td["val_patients"])]
    test = [f for f in films if f.patient in set(td["test_patients"])]
    chosen = {"test": test, "val": val, "all": films}[split]
    method = {
        "test": "held-out test split, 95 % CI by bootstrap over women",
        "val": "validation split (used to choose the epoch and threshold, so optimistic), "
        "95 % CI by bootstrap over women",
        "all": "all films, training women included (optimistic), 95 % CI by bootstrap over women",
    }[split]
    source = str(td.get("source", "mini-MIAS")).split(" (")[0]
    return FilmSelection(
        split,
        chosen,
        val,
        held_out=split == "test",
        method=method,
        description=f"{source}, the artifact's {_women(val)} validation and {_women(test)} "
        f"test women ({len(val)} and {len(test)} films); film AUC on "
        + {"test": "the test women", "val": "the validation women", "all": "all films"}[split]
        + (
            ", calibration, exam score and bands fitted on the validation women"
            if split == "test"
            else ", no calibration, exam score or bands (the validation women are among them)"
        )
        + ", heat map and marks on "
        + {"test": "both", "val": "the validation women", "all": "all films"}[split],
    )

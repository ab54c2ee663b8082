"""Readers for scored image sets and their mapping onto the CT quality scale.

Every reader returns MONAI-style data dicts sorted by ``name``:

- LDCTIQAC 2023 (CT): ``{"image": abs path, "label": float 0-4, "name": file name}``.
- Natural-image IQA sets: ``{"image", "label", "mos", "name", "dataset"}`` plus ``"group"`` where images share a
  source picture (KADID-10k reference image). ``label`` is the raw ``mos`` mapped linearly onto the LDCTIQAC scale
  0 (bad) ... 4 (excellent), higher is better, as listed in :data:`SCORE_MAPPINGS`.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scripts.ctio.kinds import TIFF_SUFFIXES
from scripts.utils.listing import name_list
from scripts.utils.scores import SCORE_RANGE

logger = logging.getLogger(__name__)

# Float round-off in a source file (e.g. 5.0000001 on a 1-5 scale) is not a data error.
_RANGE_TOL = 1e-6
_LDCTIQAC_LABEL_FILES = ("train.json", "test.json", "scores.json")
# The LIVE Challenge release scores 7 extra images that were shown to raters for training only.
LIVEC_TRAINING_IMAGES = frozenset(f"t{i}.bmp" for i in range(1, 8))


class DatasetMismatchError(ValueError):
    """Scores and image files disagree (missing files, unscored images, invalid or duplicate scores)."""


@dataclass(frozen=True)
class ScoreMapping:
    """Linear map of one source score column onto the CT scale 0-4 (higher is better).

    Attributes:
        dataset: dataset key written into each item.
        column: source column (or variable) holding the score.
        source_range: ``(lo, hi)`` of the source scale.
        higher_is_better: direction of the source scale.
        source: where the column lives, when the column name alone does not say it.
    """

    dataset: str
    column: str
    source_range: tuple[float, float]
    higher_is_better: bool
    source: str = ""

    def __post_init__(self) -> None:
        lo, hi = self.source_range
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"score_range must be finite (lo, hi) with hi > lo, got {self.source_range}")

    def to_ct(self, score: float) -> float:
        """Map a source score onto 0-4; the caller checks :meth:`in_range` first."""
        lo, hi = self.source_range
        frac = (score - lo) / (hi - lo) if self.higher_is_better else (hi - score) / (hi - lo)
        return float(min(max(SCORE_RANGE[1] * frac, SCORE_RANGE[0]), SCORE_RANGE[1]))

    def in_range(self, score: float) -> bool:
        """True when ``score`` is finite and inside the source range (within round-off)."""
        lo, hi = self.source_range
        tol = _RANGE_TOL * (hi - lo)
        return math.isfinite(score) and lo - tol <= score <= hi + tol

    @property
    def direction(self) -> str:
        """``"higher is better"`` or ``"lower is better"``."""
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def formula(self) -> str:
        """The mapping as text, e.g. ``label = dmos - 1``."""
        lo, hi = self.source_range
        if self.higher_is_better:
            num = f"{self.column} - {lo:g}" if lo else self.column
        else:
            num = f"{hi:g} - {self.column}"
        den = (hi - lo) / SCORE_RANGE[1]
        if den == 1:
            return f"label = {num}"
        num = f"({num})" if " - " in num else num
        return f"label = {num} / {den:g}" if den > 1 else f"label = {num} * {1 / den:g}"


# One row per (dataset, score column) the readers support; docs quote score_mapping_table().
SCORE_MAPPINGS: dict[str, ScoreMapping] = {
    "ldctiqac": ScoreMapping("ldctiqac", "score", (0.0, 4.0), True),
    "kadid10k": ScoreMapping("kadid10k", "dmos", (1.0, 5.0), True),
    "koniq10k": ScoreMapping("koniq10k", "MOS", (1.0, 5.0), True),
    "koniq10k_zscore": ScoreMapping("koniq10k", "MOS_zscore", (0.0, 100.0), True),
    "spaq": ScoreMapping("spaq", "MOS", (0.0, 100.0), True),
    "livec": ScoreMapping("livec", "MOS", (0.0, 100.0), True, "AllMOS_release (.mat) or mos (CSV)"),
}


def score_mapping_table() -> str:
    """Return :data:`SCORE_MAPPINGS` as a Markdown table (dataset, column, range, direction, formula)."""
    rows = ["| dataset | source column | source range | direction | mapping to CT scale 0-4 |", "|---|---|---|---|---|"]
    for key, m in SCORE_MAPPINGS.items():
        lo, hi = m.source_range
        rows.append(f"| {key} | {m.source or m.column} | {lo:g}-{hi:g} | {m.direction} | {m.formula} |")
    rows.append(
        "| csv | declared `score_col` | declared `score_range` | declared | label = 4 * (x - lo) / (hi - lo) "
        "(higher better) or 4 * (hi - x) / (hi - lo) |"
    )
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------- shared helpers


def _skip(dataset: str, name: str, reason: str) -> None:
    logger.warning("%s: skipping %s: %s", dataset, name, reason)


def _as_score(value: Any) -> float:
    """Convert a table/JSON value to float; NaN for anything that is not a plain number."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _read_table(path: Path, required: Sequence[str], dataset: str) -> Any:
    """Read a CSV (or xlsx when openpyxl is importable) as strings and check that ``required`` columns exist."""
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: score table {path} does not exist")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        if not _module_available("openpyxl"):
            raise ImportError(f"{dataset}: reading {path.name} needs the 'openpyxl' package; install it or save as CSV")
        table = pd.read_excel(path, dtype=str, keep_default_na=False)
    else:
        # Strings everywhere: names such as "0001.png" must not become numbers; scores are parsed per row.
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(
            f"{dataset}: {path.name} lacks column(s) {missing}; expected {list(required)}, found {list(table.columns)}"
        )
    return table


def _first_existing(candidates: Sequence[Path], what: str, dataset: str, hint: str) -> Path:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{dataset}: no {what} found (tried {tried}); {hint}")


def _finish(
    items: list[dict], problems: dict[str, dict[str, str]], dataset: str, where: str, total: int, strict: bool
) -> list[dict]:
    """Raise on problems (strict) or log each as a skip; return the good items sorted by name.

    ``problems`` maps a problem kind (e.g. "missing image file") to ``{name: reason}``.
    """
    problems = {kind: found for kind, found in problems.items() if found}
    if problems and strict:
        parts = [f"{len(found)} {kind}(s): {name_list(found)}" for kind, found in problems.items()]
        raise DatasetMismatchError(
            f"{dataset} ({where}): {'; '.join(parts)} [{total} scored entries]; "
            "to skip them, pass --strict False (strict=False in Python)"
        )
    for found in problems.values():
        for name, reason in sorted(found.items()):
            _skip(dataset, name, reason)
    if not items:
        raise DatasetMismatchError(f"{dataset} ({where}): no usable items out of {total} scored entries")
    return sorted(items, key=lambda item: item["name"])


def _build_items(
    records: Iterable[tuple[str, Path, Any, dict]], mapping: ScoreMapping, where: str, strict: bool
) -> list[dict]:
    """Turn ``(name, image path, raw score, extra keys)`` records into checked, mapped items."""
    items: list[dict] = []
    problems: dict[str, dict[str, str]] = {"duplicate entry": {}, "invalid score": {}, "missing image file": {}}
    seen: set[str] = set()
    total = 0
    lo, hi = mapping.source_range
    for name, path, raw, extra in records:
        total += 1
        score = _as_score(raw)
        if name in seen:
            problems["duplicate entry"][name] = "scored more than once (first entry kept)"
        elif not mapping.in_range(score):
            problems["invalid score"][name] = f"score {raw!r} is not a number in [{lo:g}, {hi:g}]"
        elif not path.is_file():
            problems["missing image file"][name] = f"image file {path} does not exist"
        else:
            items.append(
                {
                    "image": str(path.resolve()),
                    "label": mapping.to_ct(score),
                    "mos": score,
                    "name": name,
                    "dataset": mapping.dataset,
                    **extra,
                }
            )
        seen.add(name)
    return _finish(items, problems, mapping.dataset, where, total, strict)


def _check_dir(path: Path, dataset: str, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: {what} folder {path} does not exist")
    return path


# --------------------------------------------------------------------------------------------- LDCTIQAC 2023


def _ldctiqac_labels_path(root: Path, labels: str | os.PathLike | None) -> Path:
    if labels is not None:
        path = Path(labels)
        if not path.is_file():
            raise FileNotFoundError(f"ldctiqac: labels file {path} does not exist")
        return path
    found = [root / n for n in _LDCTIQAC_LABEL_FILES if (root / n).is_file()]
    if len(found) > 1:
        raise ValueError(f"ldctiqac: several label files in {root} ({', '.join(p.name for p in found)}); pass labels=")
    if not found:
        raise FileNotFoundError(f"ldctiqac: no labels in {root} (expected one of {', '.join(_LDCTIQAC_LABEL_FILES)})")
    return found[0]


def _load_ldctiqac_labels(path: Path) -> dict[str, Any]:
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"ldctiqac: {path} is not valid JSON ({err})") from None
    if not isinstance(labels, dict):
        raise ValueError(f"ldctiqac: {path} must hold an object {{file name: score}}, found {type(labels).__name__}")
    return labels


def read_ldctiqac(
    root: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    strict: bool = True,
) -> list[dict]:
    """Read an LDCTIQAC 2023 folder: scored float32 TIFF slices on the 0-4 radiologist scale.

    Layouts: train ``<root>/image/0000.tif`` + ``<root>/train.json``; test ``<root>/test000.tiff`` +
    ``<root>/test.json``; or ``<root>/scores.json`` beside the images. The JSON maps file name to score.

    Args:
        root: dataset folder.
        labels: explicit labels JSON; by default the one of train.json, test.json, scores.json in ``root``.
        image_dir: folder of the TIFFs; by default ``<root>/image`` if it exists, else ``root``.
        strict: raise :class:`DatasetMismatchError` on any mismatch; if False, log each as a skip and go on.

    Returns:
        Items ``{"image": absolute path, "label": float, "name": file name}`` sorted by name.

    Raises:
        DatasetMismatchError: a scored file is missing, an image has no score, or a score is not in [0, 4].
    """
    root = _check_dir(Path(root), "ldctiqac", "dataset")
    labels_path = _ldctiqac_labels_path(root, labels)
    folder = Path(image_dir) if image_dir is not None else (root / "image" if (root / "image").is_dir() else root)
    _check_dir(folder, "ldctiqac", "image")
    scores = _load_ldctiqac_labels(labels_path)
    on_disk = {p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES}
    problems: dict[str, dict[str, str]] = {"invalid score": {}, "missing image file": {}, "unscored image": {}}
    items = []
    for name, raw in scores.items():
        # JSON labels must be numbers: a quoted "3" hints at a converted or hand-edited file.
        score = _as_score(raw) if isinstance(raw, (int, float)) else math.nan
        if not (math.isfinite(score) and SCORE_RANGE[0] <= score <= SCORE_RANGE[1]):
            problems["invalid score"][name] = f"score {raw!r} is not a number in [0, 4]"
        elif name not in on_disk:
            problems["missing image file"][name] = f"scored in {labels_path.name} but not found in {folder}"
        else:
            items.append({"image": str((folder / name).resolve()), "label": score, "name": name})
    for name in on_disk.difference(scores):
        problems["unscored image"][name] = f"image in {folder} has no score in {labels_path.name}"
    where = f"{labels_path} vs {folder}, {len(on_disk)} images"
    return _finish(items, problems, "ldctiqac", where, len(scores), strict)


# --------------------------------------------------------------------------------------------- natural-image IQA


def read_kadid10k(
    root: str | os.PathLike,
    csv: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    strict: bool = True,
) -> list[dict]:
    """Read KADID-10k (``dmos.csv``: dist_img, ref_img, dmos, var; 1-5, higher is better despite the name).

    Args:
        root: dataset folder.
        csv: score table; default ``<root>/dmos.csv``.
        image_dir: image folder; default ``<root>/images``.
        strict: raise on missing images or invalid scores; if False, log each as a skip.

    Returns:
        Items with ``group`` = reference image, so that splits keep all distortions of a picture together.
    """
    root = Path(root)
    mapping = SCORE_MAPPINGS["kadid10k"]
    csv_path = Path(csv) if csv is not None else root / "dmos.csv"
    folder = Path(image_dir) if image_dir is not None else root / "images"
    table = _read_table(csv_path, ["dist_img", "ref_img", "dmos"], "kadid10k")
    records = (
        (n.strip(), folder / n.strip(), s, {"group": r.strip()})
        for n, r, s in zip(table["dist_img"], table["ref_img"], table["dmos"])
    )
    return _build_items(records, mapping, f"{csv_path} vs {folder}", strict)


def read_koniq10k(
    root: str | os.PathLike,
    score: str = "MOS",
    csv: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    strict: bool = True,
) -> list[dict]:
    """Read KonIQ-10k (``koniq10k_scores_and_distributions.csv``).

    Args:
        root: dataset folder.
        score: ``"MOS"`` (1-5, default) or ``"MOS_zscore"`` (0-100).
        csv: score table; default ``<root>/koniq10k_scores_and_distributions.csv``.
        image_dir: image folder; default ``<root>/1024x768``, else ``<root>/512x384``.
        strict: raise on missing images or invalid scores; if False, log each as a skip.

    Returns:
        Items sorted by name.
    """
    keys = {"MOS": "koniq10k", "MOS_zscore": "koniq10k_zscore"}
    if score not in keys:
        raise ValueError(f"koniq10k: score must be one of {sorted(keys)}, got {score!r}")
    root = Path(root)
    csv_path = Path(csv) if csv is not None else root / "koniq10k_scores_and_distributions.csv"
    if image_dir is not None:
        folder = Path(image_dir)
    else:
        folder = _first_existing([root / "1024x768", root / "512x384"], "image folder", "koniq10k", "pass image_dir=")
    table = _read_table(csv_path, ["image_name", score], "koniq10k")
    records = ((n.strip(), folder / n.strip(), s, {}) for n, s in zip(table["image_name"], table[score]))
    return _build_items(records, SCORE_MAPPINGS[keys[score]], f"{csv_path} vs {folder}", strict)


def read_spaq(
    root: str | os.PathLike,
    table: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    strict: bool = True,
) -> list[dict]:
    """Read SPAQ (``Image name, MOS`` on 0-100; CSV, or xlsx when openpyxl is installed).

    Args:
        root: dataset folder.
        table: score table; default ``MOS and Image attribute scores.{csv,xlsx}`` in ``<root>/Annotations`` or
            ``root`` (CSV preferred).
        image_dir: image folder; default ``<root>/TestImage``.
        strict: raise on missing images or invalid scores; if False, log each as a skip.

    Returns:
        Items sorted by name.
    """
    root = Path(root)
    if table is not None:
        table_path = Path(table)
    else:
        stem = "MOS and Image attribute scores"
        candidates = [d / f"{stem}{ext}" for d in (root / "Annotations", root) for ext in (".csv", ".xlsx")]
        table_path = _first_existing(candidates, "score table", "spaq", "pass table=")
    folder = Path(image_dir) if image_dir is not None else root / "TestImage"
    frame = _read_table(table_path, ["Image name", "MOS"], "spaq")
    records = ((n.strip(), folder / n.strip(), s, {}) for n, s in zip(frame["Image name"], frame["MOS"]))
    return _build_items(records, SCORE_MAPPINGS["spaq"], f"{table_path} vs {folder}", strict)


def _cell_strings(cells: np.ndarray) -> list[str]:
    """File names from a MATLAB cell array as loaded by ``scipy.io.loadmat`` (each cell a 1-element char array)."""
    names = []
    for cell in np.asarray(cells, dtype=object).ravel():
        flat = np.asarray(cell).ravel()
        names.append(str(flat[0]).strip() if flat.size else "")
    return names


def _load_mat_variable(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat

    if not path.is_file():
        raise FileNotFoundError(f"livec: {path} does not exist")
    content = loadmat(path)
    if key not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise ValueError(f"livec: {path.name} lacks variable {key!r}; expected {[key]}, found {found}")
    return content[key]


def _livec_mat_scores(root: Path) -> list[tuple[str, Any]]:
    data = root / "Data"
    names = _cell_strings(_load_mat_variable(data / "AllImages_release.mat", "AllImages_release"))
    mos = np.asarray(_load_mat_variable(data / "AllMOS_release.mat", "AllMOS_release"), dtype=float).ravel()
    if len(names) != len(mos):
        raise ValueError(f"livec: AllImages_release lists {len(names)} images but AllMOS_release has {len(mos)} scores")
    return list(zip(names, mos.tolist()))


def read_livec(
    root: str | os.PathLike,
    csv: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    include_training_images: bool = False,
    strict: bool = True,
) -> list[dict]:
    """Read the LIVE In the Wild Image Quality Challenge database (MOS 0-100).

    Scores come from ``<root>/Data/AllImages_release.mat`` + ``AllMOS_release.mat`` or from a CSV with columns
    ``image, mos``. The seven rater-training images ``t1.bmp`` ... ``t7.bmp`` (stored in ``Images/trainingImages``)
    are recognised by file name, never by row position.

    Args:
        root: dataset folder.
        csv: optional CSV ``image, mos`` used instead of the .mat files.
        image_dir: image folder; default ``<root>/Images``.
        include_training_images: keep t1-t7 (looked up in ``<image_dir>/trainingImages`` first).
        strict: raise on missing images or invalid scores; if False, log each as a skip.

    Returns:
        Items sorted by name (1,162 for the full release without the training images).
    """
    root = Path(root)
    folder = Path(image_dir) if image_dir is not None else root / "Images"
    if csv is not None:
        frame = _read_table(Path(csv), ["image", "mos"], "livec")
        scores = [(n.strip(), s) for n, s in zip(frame["image"], frame["mos"])]
        source = str(csv)
    else:
        scores = _livec_mat_scores(root)
        source = str(root / "Data")
    dropped = [n for n, _ in scores if n in LIVEC_TRAINING_IMAGES]
    if dropped and not include_training_images:
        logger.info("livec: leaving out %d rater-training images (%s)", len(dropped), name_list(dropped))
        scores = [(n, s) for n, s in scores if n not in LIVEC_TRAINING_IMAGES]

    def locate(name: str) -> Path:
        in_training = folder / "trainingImages" / name
        return in_training if name in LIVEC_TRAINING_IMAGES and in_training.is_file() else folder / name

    records = ((n, locate(n), s, {}) for n, s in scores)
    return _build_items(records, SCORE_MAPPINGS["livec"], f"{source} vs {folder}", strict)


def read_csv_dataset(
    csv: str | os.PathLike,
    *,
    score_range: tuple[float, float],
    higher_is_better: bool,
    image_col: str = "image",
    score_col: str = "score",
    group_col: str | None = None,
    image_root: str | os.PathLike | None = None,
    dataset: str = "csv",
    strict: bool = True,
) -> list[dict]:
    """Read any scored image list from a CSV, mapping its declared score range onto the CT scale 0-4.

    The item ``name`` is the image entry as written in the CSV (the file name for a flat folder), so that it stays
    unique when images sit in sub-folders.

    Args:
        csv: the CSV file.
        score_range: ``(lo, hi)`` of the score column; scores outside it are invalid.
        higher_is_better: direction of the score column (must be declared: a wrong guess inverts the labels).
        image_col: column of image paths, relative to ``image_root`` unless absolute.
        score_col: column of scores.
        group_col: optional column copied to ``group`` (e.g. source picture) for grouped splits.
        image_root: base folder of relative paths; default the CSV's folder.
        dataset: value of the items' ``dataset`` key.
        strict: raise on missing images or invalid scores; if False, log each as a skip.

    Returns:
        Items sorted by name.
    """
    csv_path = Path(csv)
    if csv_path.is_dir():
        raise ValueError(f"{dataset}: {csv_path} is a folder; the csv kind needs the path of the CSV file")
    lo, hi = (float(v) for v in score_range)
    mapping = ScoreMapping(dataset, score_col, (lo, hi), bool(higher_is_better))
    base = Path(image_root) if image_root is not None else csv_path.parent
    required = [image_col, score_col] + ([group_col] if group_col else [])
    frame = _read_table(csv_path, required, dataset)
    groups = frame[group_col] if group_col else [None] * len(frame)

    def record(entry: str, score: Any, group: str | None) -> tuple[str, Path, Any, dict]:
        entry = entry.strip()
        extra = {"group": group.strip()} if group is not None else {}
        return entry, base / entry, score, extra  # an absolute entry replaces base in the join

    records = (record(e, s, g) for e, s, g in zip(frame[image_col], frame[score_col], groups))
    return _build_items(records, mapping, f"{csv_path} vs {base}", strict)


READERS: dict[str, Callable[..., list[dict]]] = {
    "ldctiqac": read_ldctiqac,
    "kadid10k": read_kadid10k,
    "koniq10k": read_koniq10k,
    "spaq": read_spaq,
    "livec": read_livec,
    "csv": read_csv_dataset,
}


def read_iqa_dataset(kind: str, root: str | os.PathLike, **kwargs: Any) -> list[dict]:
    """Read a scored dataset by name, as configs do: ``read_iqa_dataset("kadid10k", "/data/kadid10k")``.

    Args:
        kind: one of ``ldctiqac, kadid10k, koniq10k, spaq, livec, csv``.
        root: dataset folder (for ``csv``: the CSV file).
        **kwargs: passed to the reader (e.g. ``strict``, ``image_dir``; ``score_range``/``higher_is_better`` for csv).

    Returns:
        The reader's items, sorted by name.
    """
    key = str(kind).strip().lower()
    if key not in READERS:
        close = difflib.get_close_matches(key, list(READERS), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset kind {kind!r}; valid kinds: {', '.join(READERS)}{hint}")
    return READERS[key](root, **kwargs)

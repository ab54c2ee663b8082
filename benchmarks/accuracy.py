"""Print held-out accuracy figures of trained models beside the classical noise baseline (figures, never asserts).

Usage (from the repository root)::

    python benchmarks/accuracy.py [--work tfkt_bundle/eval/accuracy_benchmark] [--docs DIR]
        [--model NAME=PRESET:CHECKPOINT ...] [--n-boot 1000]

Default models: ``released=hybrid_lite0:tfkt_bundle/models/model.pt`` (the shipped weights) and, once `make demo` has
run, ``demo=hybrid_lite0:tfkt_bundle/eval/demo_models/model.pt``. Evaluation sets (each skipped when absent):

- ``heldout``: the shared abdomen series degraded by the bundle's simulator (built once, cached under --work; see
  benchmarks/heldout.py, which states the label rule); ``heldout_noise`` is its dose and view families alone;
- ``ldctiqac_samples``: the 10 real LDCTIQAC 2023 test slices with radiologist scores (evaluation only);
- ``demo_ct_test``: the demo's held-out CT set (synthetic SSIM scores, 256x256).

Per set and model: PLCC, SROCC, KROCC and the challenge score |PLCC| + |SROCC| + |KROCC| on raw predictions with
percentile-bootstrap 95 % CIs over images (``scripts.evaluation.metrics.summarize``). Per held-out family: the share of
same-slice pairs at two severities that the model orders correctly (the less degraded scored higher; a tie counts
half), and the SROCC of the score against the severity level. Nothing is tuned or selected on these sets.
Predictions are cached under --work/predictions, keyed by checkpoint content and image list.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE = REPO_ROOT / "tfkt_bundle"
sys.path.insert(0, str(BUNDLE))

from heldout import build_heldout  # noqa: E402

from scripts.ctio.images import read_image_file  # noqa: E402
from scripts.data.datasets import read_ldctiqac  # noqa: E402
from scripts.evaluation.metrics import summarize  # noqa: E402
from scripts.evaluation.noise_baseline import noise_score  # noqa: E402
from scripts.nets.networks import create_network  # noqa: E402
from scripts.nets.weights import load_state_dict_file  # noqa: E402
from scripts.utils.atomic import atomic_save_png, atomic_write_json  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_WORK = BUNDLE / "eval" / "accuracy_benchmark"
RELEASED_MODEL = f"released=hybrid_lite0:{BUNDLE / 'models' / 'model.pt'}"  # the weights that ship
DEMO_MODEL = f"demo=hybrid_lite0:{BUNDLE / 'eval' / 'demo_models' / 'model.pt'}"  # what `make demo` trains
BASELINE = "noise_baseline"
LABEL = "label (SSIM rule)"
SET_SOURCES = {"ldctiqac_samples": SHARED / "ldctiqac_samples", "demo_ct_test": REPO_ROOT / "demo_data" / "ct_test"}
Predictor = Callable[[Sequence[Mapping]], np.ndarray]


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint to score and the network preset it was saved from."""

    name: str
    preset: str
    checkpoint: Path

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``NAME=PRESET:CHECKPOINT``, e.g. ``demo=hybrid_lite0:tfkt_bundle/models/model.pt``."""
        name, eq, rest = text.partition("=")
        preset, colon, path = rest.partition(":")
        if not (eq and colon and name and preset and path):
            raise argparse.ArgumentTypeError(f"--model wants NAME=PRESET:CHECKPOINT, got {text!r}")
        return cls(name, preset, Path(path).resolve())


# --------------------------------------------------------------------------------------------- evaluation sets


def load_sets(work: Path, series_dir: Path) -> dict[str, list[dict]]:
    """Items of every available evaluation set; the held-out records carry their families and severities."""
    sets: dict[str, list[dict]] = {}
    if series_dir.is_dir():
        folder = build_heldout(work, series_dir)
        records = {r["name"]: r for r in json.loads((folder / "degradations.json").read_text())}
        sets["heldout"] = [item | records[item["name"]] for item in read_ldctiqac(folder)]
        # The noise/streak part alone: its SSIM labels order severity as the families do.
        sets["heldout_noise"] = [i for i in sets["heldout"] if {"dose", "views"} & set(i["families"])]
    else:
        print(f"  {series_dir} is absent: no held-out set")
    for name, folder in SET_SOURCES.items():
        if folder.is_dir():
            sets[name] = read_ldctiqac(folder)
    return sets


# --------------------------------------------------------------------------------------------- predictions


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def network_predictor(spec: ModelSpec) -> Predictor:
    """Score items with the checkpoint's network, one full-size slice at a time (the fastest on a 2-core CPU)."""
    net = create_network(spec.preset)
    net.load_state_dict(load_state_dict_file(spec.checkpoint))
    net.eval()

    def predict(items: Sequence[Mapping]) -> np.ndarray:
        with torch.inference_mode():
            scores = [net(torch.from_numpy(read_image_file(i["image"]))[None, None]).item() for i in items]
        return np.asarray(scores)

    return predict


def baseline_predictor(items: Sequence[Mapping]) -> np.ndarray:
    return np.asarray([noise_score(read_image_file(item["image"])) for item in items])


def cached_predictions(cache: Path, key: dict, items: Sequence[Mapping], predict: Predictor) -> np.ndarray:
    """``predict(items)``, or its earlier result stored in ``cache`` under the same key (checkpoint, image list)."""
    key = key | {"names": [i["name"] for i in items]}
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored["key"] == key:
            return np.asarray(stored["pred"])
    start = time.perf_counter()
    pred = predict(items)
    print(f"  scored {cache.parent.name}/{cache.stem}: {len(items)} images in {time.perf_counter() - start:.0f} s")
    atomic_write_json(cache, {"key": key, "pred": pred.tolist()})
    return pred


def predict_all(specs: Sequence[ModelSpec], sets: Mapping[str, list[dict]], work: Path) -> dict[str, dict]:
    """``{model: {set: predictions}}`` for every model and the noise baseline (the held-out subset reuses its set)."""
    jobs: dict[str, tuple[dict, Callable[[], Predictor]]] = {
        BASELINE: ({"baseline": "noise_score v1"}, lambda: baseline_predictor)
    }
    for spec in specs:
        key = {"preset": spec.preset, "checkpoint_sha1": _sha1(spec.checkpoint)}
        jobs[spec.name] = (key, lambda spec=spec: network_predictor(spec))
    out: dict[str, dict] = {}
    for model, (key, make) in jobs.items():
        predictor: Predictor = _lazy(make)
        out[model] = {}
        for set_name, items in sets.items():
            if set_name != "heldout_noise":
                cache = work / "predictions" / model / f"{set_name}.json"
                out[model][set_name] = cached_predictions(cache, key, items, predictor)
        if "heldout_noise" in sets:
            by_name = dict(zip((i["name"] for i in sets["heldout"]), out[model]["heldout"]))
            out[model]["heldout_noise"] = np.asarray([by_name[i["name"]] for i in sets["heldout_noise"]])
    return out


def _lazy(make: Callable[[], Predictor]) -> Predictor:
    """Build the predictor (load the network) only if some set is not cached yet."""
    built: list[Predictor] = []

    def predict(items: Sequence[Mapping]) -> np.ndarray:
        if not built:
            built.append(make())
        return built[0](items)

    return predict


# --------------------------------------------------------------------------------------------- figures


def pooled(pred: np.ndarray, items: Sequence[Mapping], n_boot: int) -> dict:
    """``summarize`` against the items' labels (logistic-fit warnings on tiny sets are expected, not news)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return summarize(pred, [i["label"] for i in items], n_boot=n_boot, seed=0)


def _family_members(items: Sequence[Mapping], family: str) -> dict[int, list[tuple[int, int]]]:
    """Per slice, (severity, item index) of the items in ``family``."""
    members: dict[int, list[tuple[int, int]]] = {}
    for index, item in enumerate(items):
        if family in item["families"]:
            members.setdefault(item["slice"], []).append((item["families"][family], index))
    return members


def family_figures(pred: np.ndarray, items: Sequence[Mapping]) -> dict[str, dict]:
    """Per family: same-slice pair accuracy and SROCC of the score against severity (pooled and per slice)."""
    families = sorted({f for item in items for f in item["families"]})
    out = {}
    for family in families:
        members = _family_members(items, family)
        right = total = 0.0
        per_slice = []
        for entries in members.values():
            for (_, a), (_, b) in itertools.combinations(sorted(entries), 2):  # a is less degraded
                total += 1
                right += 1.0 if pred[a] > pred[b] else 0.5 if pred[a] == pred[b] else 0.0
            sev, idx = zip(*entries)
            per_slice.append(-stats.spearmanr(sev, pred[list(idx)])[0])
        sev_all, idx_all = zip(*(e for entries in members.values() for e in entries))
        out[family] = {
            "pairs": int(total),
            "pair_accuracy": right / total,
            "level_srocc_pooled": float(-stats.spearmanr(sev_all, pred[list(idx_all)])[0]),
            "level_srocc_per_slice_mean": float(np.nanmean(per_slice)),
        }
    return out


def evaluate(specs: Sequence[ModelSpec], work: Path, n_boot: int, series_dir: Path = SHARED / "ct_series_abdomen"):
    """Every figure of the benchmark as one JSON-ready dict."""
    sets = load_sets(work, series_dir)
    preds = predict_all(specs, sets, work)
    results: dict = {"sets": {s: len(items) for s, items in sets.items()}, "pooled": {}, "families": {}}
    for model, by_set in preds.items():
        results["pooled"][model] = {s: pooled(p, sets[s], n_boot) for s, p in by_set.items()}
        if "heldout" in sets:
            results["families"][model] = family_figures(by_set["heldout"], sets["heldout"])
    if "heldout" in sets:
        labels = np.asarray([i["label"] for i in sets["heldout"]])
        results["families"][LABEL] = family_figures(labels, sets["heldout"])
    results["predictions"] = {
        model: {s: dict(zip((i["name"] for i in sets[s]), p.tolist())) for s, p in by_set.items()}
        for model, by_set in preds.items()
    }
    results["labels"] = {s: {i["name"]: i["label"] for i in items} for s, items in sets.items()}
    return results


# --------------------------------------------------------------------------------------------- report


def _ci(metrics: Mapping, key: str) -> str:
    low, high = metrics[f"{key}_ci"] or (float("nan"),) * 2
    return f"{metrics[key]:.3f} [{low:.3f}, {high:.3f}]"


def pooled_table(results: Mapping, models: Sequence[str] | None = None) -> str:
    """Markdown table: per set and model, n and PLCC/SROCC/KROCC/score with their 95 % CIs."""
    models = models or list(results["pooled"])
    lines = ["| set | model | n | PLCC | SROCC | KROCC | score |", "|---|---|---|---|---|---|---|"]
    for set_name in results["sets"]:
        for model in models:
            m = results["pooled"][model][set_name]
            cells = " | ".join(_ci(m, k) for k in ("plcc", "srocc", "krocc", "score"))
            lines.append(f"| {set_name} | {model} | {m['n']} | {cells} |")
    return "\n".join(lines)


def family_table(results: Mapping, models: Sequence[str] | None = None) -> str:
    """Markdown table: per family, pair accuracy and level SROCC (pooled over slices) per model."""
    models = [*(models or [m for m in results["families"] if m != LABEL]), LABEL]
    header = "| family | pairs | " + " | ".join(models) + " |"
    lines = [header, "|---|---|" + "---|" * len(models)]
    for family, first in results["families"][models[0]].items():
        figures = [results["families"][m][family] for m in models]
        cells = [f"{f['pair_accuracy']:.2f} / {f['level_srocc_pooled']:+.2f}" for f in figures]
        lines.append(f"| {family} | {first['pairs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_heldout(results: Mapping, path: Path) -> Path:
    """One scatter per model: prediction against the held-out label, coloured by family."""
    labels = results["labels"]["heldout"]
    models = list(results["predictions"])
    cols = min(4, len(models))
    rows = -(-len(models) // cols)
    fig = Figure(figsize=(4.2 * cols, 4.0 * rows), dpi=110)
    for k, model in enumerate(models):
        ax = fig.add_subplot(rows, cols, k + 1)
        pred = results["predictions"][model]["heldout"]
        for kind in ("dose", "views", "gaussian", "tv", "nlm"):
            names = [n for n in pred if f"_{kind}" in n]
            ax.scatter([pred[n] for n in names], [labels[n] for n in names], s=12, label=kind)
        score = results["pooled"][model]["heldout"]["score"]
        ax.set_title(f"{model}\nheld-out score {score:.3f}", fontsize=9)
        ax.set_xlabel("predicted score")
        ax.set_ylabel("label (SSIM rule, 0-4)")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.tight_layout()
    return atomic_save_png(fig, path)


def report(results: dict, docs: Path | None, stem: str = "accuracy") -> None:
    """Print the tables; with ``docs``, write the results JSON and the scatter plot there."""
    print("\n## Pooled, raw predictions, 95 % bootstrap CIs over images\n")
    print(pooled_table(results))
    if results["families"]:
        print("\n## Held-out families: same-slice pair accuracy / SROCC of score vs severity (pooled over slices)\n")
        print(family_table(results))
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        atomic_write_json(docs / f"{stem}.json", results)
        if "heldout" in results["sets"]:
            plot_heldout(results, docs / f"{stem}_heldout.png")
        print(f"\nresults in {docs / f'{stem}.json'}")


def default_models() -> list[ModelSpec]:
    """The released weights, and the demo's beside them once `make demo` has written its own."""
    specs = [ModelSpec.parse(RELEASED_MODEL)]
    demo = ModelSpec.parse(DEMO_MODEL)
    return [*specs, demo] if demo.checkpoint.is_file() else specs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache of the held-out set and predictions")
    parser.add_argument("--docs", type=Path, help="folder for the results JSON and plots")
    parser.add_argument("--model", type=ModelSpec.parse, action="append", help="NAME=PRESET:CHECKPOINT (repeat)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per CI")
    args = parser.parse_args(argv)
    specs = args.model or default_models()
    start = time.perf_counter()
    results = evaluate(specs, args.work.resolve(), args.n_boot)
    results["command"] = " ".join(["python", "benchmarks/accuracy.py", *(argv or sys.argv[1:])])
    results["models"] = {s.name: {"preset": s.preset, "checkpoint": str(s.checkpoint)} for s in specs}
    report(results, args.docs)
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

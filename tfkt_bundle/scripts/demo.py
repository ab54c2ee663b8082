"""README's first command (`make demo`): the whole TFKT recipe on built-in data, through the bundle's own workflows.

1. build the demo data (natural images with graded distortions; real CT slices from pydicom-data degraded by the
   low-dose simulator, in the LDCTIQAC layout; scores are synthetic, see scripts/demo_data.py),
2. pre-train on the natural set (configs/pretrain.json over configs/train.json),
3. fine-tune on the CT set (configs/train.json), starting from the pre-trained checkpoint,
4. evaluate on the held-out CT set (configs/evaluate.json),
5. score a series slice by slice (configs/inference.json): the shared abdomen DICOM series when ../shared is
   present, else a NIfTI volume made from the held-out demo slices.

Every step is the `python -m monai.bundle run ...` command a user would type, printed before it runs. The demo's
weights go to eval/demo_models/ (``--ckpt_dir``), never over the released ones in models/. Epoch counts
are small so that the demo ends in minutes on a 2-core CPU; README says what a full-size run needs.
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BUNDLE = Path(__file__).resolve().parent.parent
REPO = BUNDLE.parent
SHARED_SERIES = REPO.parent / "shared" / "data" / "ct_series_abdomen"

# The demo's own weights: models/ holds the released ones, which the demo must never overwrite.
DEMO_MODELS = ["--ckpt_dir", "eval/demo_models"]
# Small on purpose: minutes on a laptop CPU; the configs' own defaults are the full-size recipe.
DEMO_SETTINGS = {
    "pretrain": ["--max_epochs", "3", "--batch_size", "16"],
    "train": ["--max_epochs", "6", "--batch_size", "8"],
}


def _run(args: list[str]) -> None:
    command = [sys.executable, "-m", "monai.bundle", "run", *args]
    shown = " ".join(f'"{a}"' if any(c in a for c in " []'") else a for a in args)
    print(f"\n$ cd {BUNDLE.relative_to(REPO)} && python -m monai.bundle run {shown}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=BUNDLE, check=True)
    print(f"  ... done in {time.perf_counter() - start:.0f} s", flush=True)


def _demo_volume(ct_test: Path, out: Path) -> Path:
    """A NIfTI volume (HU) stacked from the held-out demo slices, so the series path runs without ../shared."""
    import nibabel as nib

    from scripts.ctio.images import read_image_file
    from scripts.ctio.window import invert_hu_window
    from scripts.data.datasets import read_ldctiqac
    from scripts.utils.atomic import atomic_path

    items = read_ldctiqac(ct_test)
    # Slice k is the k-th held-out image on a 1 mm RAS grid (array axes x, y, z): reversing rows and columns and
    # transposing puts it in the radiological display layout in which scripts.ctio.nifti reads NIfTI slices back.
    volume = np.stack([invert_hu_window(read_image_file(item["image"]))[::-1, ::-1].T for item in items], axis=-1)
    image = nib.Nifti1Image(volume.astype(np.float32), np.eye(4))
    with atomic_path(out) as tmp:  # a killed demo leaves no half-written volume for the next run to read
        tmp.write_bytes(gzip.compress(image.to_bytes(), compresslevel=1))
    return out


def _bundle_paths() -> dict[str, Path]:
    """Where the workflows wrote their files, read from train.json (the one place that names them)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser["bundle_root"] = str(BUNDLE)
    parser["ckpt_dir"] = str(BUNDLE / DEMO_MODELS[1])
    return {
        key: Path(parser.get_parsed_content(key)).resolve() for key in ("model_path", "pretrained_path", "output_dir")
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO / "demo_data"), help="where the demo data is built")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the demo data even if it exists")
    args = parser.parse_args(argv)
    data = Path(args.data).resolve()
    start = time.perf_counter()

    if args.rebuild or not (data / "ct_test" / "test.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "scripts.synthesis.demo_data", "--out", str(data)], cwd=BUNDLE, check=True
        )
    _run(
        [
            "pretraining",
            "--config_file",
            "['configs/train.json','configs/pretrain.json']",
            "--dataset_dir",
            str(data / "natural" / "scores.csv"),
            *DEMO_SETTINGS["pretrain"],
            *DEMO_MODELS,
        ]
    )
    _run(
        [
            "training",
            "--config_file",
            "configs/train.json",
            "--dataset_dir",
            str(data / "ct_train"),
            *DEMO_SETTINGS["train"],
            *DEMO_MODELS,
        ]
    )
    _run(
        [
            "evaluating",
            "--config_file",
            "['configs/train.json','configs/evaluate.json']",
            "--dataset_dir",
            str(data / "ct_test"),
            *DEMO_MODELS,
        ]
    )
    series = SHARED_SERIES if SHARED_SERIES.is_dir() else _demo_volume(data / "ct_test", data / "demo_volume.nii.gz")
    _run(["run", "--config_file", "configs/inference.json", "--dataset_dir", str(series), *DEMO_MODELS])

    paths = _bundle_paths()
    eval_dir = paths["output_dir"]
    print(f"""
Demo finished in {(time.perf_counter() - start) / 60:.1f} min. Scores in the demo data are synthetic (SSIM against
the clean source, mapped to 0-4); they show the machinery, not radiologist agreement.
  demo data          {data}
  pre-trained model  {paths["pretrained_path"]}
  fine-tuned model   {paths["model_path"]}
  validation         {eval_dir / "finetune"}  (val_predictions.csv, val_metrics.json, val_scatter.png)
  held-out test      {eval_dir / "evaluate"}  (test_predictions.csv, test_metrics.json, test_scatter.png)
  series scores      {eval_dir / "inference"}  (report.html, index.csv, one folder per series)
  MLflow store       {eval_dir / "mlruns.db"}
  browse runs with   mlflow ui --backend-store-uri sqlite:///{eval_dir / "mlruns.db"}""")


if __name__ == "__main__":
    main()

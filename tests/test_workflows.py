"""Bundle workflows end to end on tiny data with the tiny network: pre-train, fine-tune, resume, evaluate, infer."""

import csv
import json
import logging

import mlflow
import pytest
import tifffile
import torch
from ignite.engine import Events
from monai.bundle import create_workflow
from scipy import stats

from scripts.nets.networks import create_network

from conftest import BUNDLE_ROOT

pytestmark = pytest.mark.slow

TINY = {"network_preset": "hybrid_tiny", "batch_size": 4, "max_shift": 2, "n_boot": 50, "crop_size": [32, 32]}


EVALUATE = ["train.json", "evaluate.json"]


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    # Configs load from any working directory; the tools that run them from elsewhere pass bundle_root.
    monkeypatch.chdir(tmp_path)


def _workflow(config: str | list, run_id: str, **overrides):
    files = [str(BUNDLE_ROOT / "configs" / name) for name in ([config] if isinstance(config, str) else config)]
    return create_workflow(
        # logging_file=False: the bundle's logging.conf would replace pytest's log capture on the root logger.
        config_file=files,
        meta_file=str(BUNDLE_ROOT / "configs" / "metadata.json"),
        logging_file=False,
        run_id=run_id,
        **{"bundle_root": str(BUNDLE_ROOT), **overrides},
    )


def _run(config: str | list, run_id: str, **overrides) -> None:
    workflow = _workflow(config, run_id, **overrides)
    workflow.run()
    workflow.finalize()


def _dirs(tmp_path) -> dict:
    return {"ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval")}


def _finetune(tmp_path, data, **overrides) -> dict:
    args = {**TINY, **_dirs(tmp_path), "dataset_dir": str(data["train"]), "max_epochs": 2, "val_fraction": 0.25}
    args.update(overrides)
    _run("train.json", "training", **args)
    return args


def _infer(tmp_path, inputs: str) -> tuple[list[dict], object]:
    """Score ``inputs`` with the model the training workflow wrote; the rows of slice_predictions.csv and the folder."""
    out = tmp_path / "inference"
    _run(
        "inference.json",
        "run",
        network_preset="hybrid_tiny",
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(out),
        dataset_dir=inputs,
    )
    return list(csv.DictReader(open(out / "slice_predictions.csv"))), out


def _index(out) -> list[dict]:
    with open(out / "index.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _bundle_cli(run_id: str, config_file: str, *flags: str, launcher=(), timeout=600, **overrides):
    """Run ``python -m monai.bundle run`` as a user types it, from the bundle root; fail with its output's tail."""
    import subprocess
    import sys

    command = [sys.executable, *launcher, "-m", "monai.bundle", "run", run_id, "--config_file", config_file, *flags]
    command += [f"--{key}={value}" for key, value in overrides.items()]
    done = subprocess.run(command, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done


def _mlflow_runs(tmp_path):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/eval/mlruns.db")
    experiment = client.get_experiment_by_name("tfkt_bundle")
    return client, client.search_runs([experiment.experiment_id])


def test_pretrain_then_finetune_starts_from_the_pretrained_weights(tmp_path, tiny_ct_data, tiny_natural_data, caplog):
    _run(
        ["train.json", "pretrain.json"],
        "pretraining",
        **TINY,
        **_dirs(tmp_path),
        dataset_dir=str(tiny_natural_data),
        max_epochs=1,
        val_fraction=0.25,
        use_mlflow=False,
    )
    pretrained = torch.load(tmp_path / "models" / "pretrained.pt", weights_only=True)
    params = json.loads((tmp_path / "eval" / "pretrain" / "run_config.json").read_text())["params"]
    assert params["stage"] == "pretrain" and params["dataset_kind"] == "csv" and params["crop_size"] == [32, 32]
    with caplog.at_level(logging.INFO):
        workflow = _workflow(
            "train.json", "training", **TINY, **_dirs(tmp_path), dataset_dir=str(tiny_ct_data["train"])
        )
    assert "starting from the pre-trained checkpoint" in caplog.text
    network = workflow.parser.get_parsed_content("network_def")
    for name, tensor in network.state_dict().items():
        assert torch.equal(tensor, pretrained[name]), name


def test_finetune_writes_best_model_reports_and_mlflow_run(tmp_path, tiny_ct_data):
    _finetune(tmp_path, tiny_ct_data)
    best = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert "head.fc.weight" in best  # a plain state dict, loadable by inference, Deploy and Label
    last = torch.load(tmp_path / "eval" / "finetune" / "last.pt", weights_only=True)
    assert last["trainer"]["iteration"] == 2 * last["trainer"]["epoch_length"]
    assert set(last) == {"model", "optimizer", "lr_scheduler", "trainer", "best_saver"}
    rows = list(csv.DictReader(open(tmp_path / "eval" / "finetune" / "val_predictions.csv")))
    assert len(rows) == 6 and {"name", "prediction", "label"} <= set(rows[0])
    client, runs = _mlflow_runs(tmp_path)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("finetune_")
    assert len(client.get_metric_history(run.info.run_id, "val_score")) == 2
    assert run.data.params["stage"] == "finetune" and run.data.params["network_preset"] == "hybrid_tiny"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.pt", "run_config.json", "val_predictions.csv"} <= artifacts
    record = json.loads((tmp_path / "eval" / "finetune" / "run_config.json").read_text())
    assert record["config"]["network_preset"] == "hybrid_tiny"  # the command-line override, not the file's value
    assert record["config"]["train"]["trainer"]["_target_"] == "SupervisedTrainer"  # macros expanded


def test_resume_continues_after_an_interrupted_run(tmp_path, tiny_ct_data):
    args = {
        **TINY,
        **_dirs(tmp_path),
        "dataset_dir": str(tiny_ct_data["train"]),
        "max_epochs": 4,
        "val_fraction": 0.25,
        "use_mlflow": False,
    }
    workflow = _workflow("train.json", "training", **args)
    trainer = workflow.parser.get_parsed_content("train#trainer")

    def crash(engine):
        raise RuntimeError("power cut")

    trainer.add_event_handler(Events.EPOCH_STARTED(once=3), crash)
    with pytest.raises(RuntimeError, match="Failed to evaluate"):  # the runner wraps the handler's error
        workflow.run()
    saved = torch.load(tmp_path / "eval" / "finetune" / "last.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 2 * saved["trainer"]["epoch_length"]

    resumed = _workflow("train.json", "training", **args, resume=True)
    trainer = resumed.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2  # restored before running
    restored = resumed.parser.get_parsed_content("optimizer").state_dict()
    assert restored["state"] and restored["state"].keys() == saved["optimizer"]["state"].keys()
    for key, state in saved["optimizer"]["state"].items():  # Adam moments, not a fresh optimizer
        assert torch.equal(restored["state"][key]["exp_avg"], state["exp_avg"])
    assert resumed.parser.get_parsed_content("validate#best_saver").state_dict() == saved["best_saver"]
    started = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: started.append(e.state.epoch))
    resumed.run()
    assert started == [3, 4]
    optimizer = resumed.parser.get_parsed_content("optimizer")
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine schedule ran to its end
    final = torch.load(tmp_path / "eval" / "finetune" / "last.pt", weights_only=True)["trainer"]
    assert final["iteration"] == 4 * final["epoch_length"]


def test_evaluate_numbers_match_scipy_on_its_own_predictions(tmp_path, tiny_ct_data):
    _finetune(tmp_path, tiny_ct_data, use_mlflow=False)
    _run(EVALUATE, "evaluating", **TINY, **_dirs(tmp_path), dataset_dir=str(tiny_ct_data["test"]))
    out = tmp_path / "eval" / "evaluate"
    rows = list(csv.DictReader(open(out / "test_predictions.csv")))
    assert sorted(r["name"] for r in rows) == [f"test{i:03d}.tiff" for i in range(10)]
    pred = [float(r["prediction"]) for r in rows]
    label = [float(r["label"]) for r in rows]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["plcc"] == pytest.approx(stats.pearsonr(pred, label)[0], abs=1e-9)
    assert metrics["srocc"] == pytest.approx(stats.spearmanr(pred, label)[0], abs=1e-9)
    assert metrics["krocc"] == pytest.approx(stats.kendalltau(pred, label)[0], abs=1e-9)
    assert (out / "test_scatter.png").stat().st_size > 10_000


def test_evaluate_without_a_checkpoint_names_the_missing_file(tmp_path, tiny_ct_data):
    with pytest.raises(Exception) as err:
        _workflow(EVALUATE, "evaluating", **TINY, **_dirs(tmp_path), dataset_dir=str(tiny_ct_data["test"]))
    assert "model.pt" in repr(err.value) or "model.pt" in repr(err.value.__cause__)


def test_tracking_failure_warns_and_training_goes_on(tmp_path, tiny_ct_data, caplog):
    with caplog.at_level(logging.WARNING):
        _finetune(tmp_path, tiny_ct_data, max_epochs=1, tracking_uri=f"file://{tmp_path}/mlruns")
    assert "MLflow tracking switched off" in caplog.text
    assert (tmp_path / "models" / "model.pt").is_file()


def test_inference_scores_every_slice_of_a_folder(tmp_path, tiny_ct_data):
    _finetune(tmp_path, tiny_ct_data, max_epochs=1, use_mlflow=False)
    rows, out = _infer(tmp_path, str(tiny_ct_data["test"]))
    assert [r["name"] for r in rows] == [f"test{i:03d}.tiff" for i in range(10)]
    # The scores are the trained network's own outputs on the stored slices, in file order.
    network = create_network("hybrid_tiny")
    network.load_state_dict(torch.load(tmp_path / "models" / "model.pt", weights_only=True))
    network.eval()
    images = torch.stack([torch.from_numpy(tifffile.imread(tiny_ct_data["test"] / r["name"]))[None] for r in rows])
    with torch.no_grad():
        expected = network(images).reshape(-1)
    assert [float(r["prediction"]) for r in rows] == pytest.approx(expected.tolist(), abs=1e-5)
    (series,) = _index(out)  # the folder of image files is one series
    assert int(series["n_slices"]) == 10
    assert float(series["mean"]) == pytest.approx(expected.mean().item(), abs=1e-5)


def test_inference_on_a_nifti_volume(tmp_path, tiny_ct_data):
    import nibabel as nib
    import numpy as np
    import tifffile

    from scripts.ctio.window import invert_hu_window

    _finetune(tmp_path, tiny_ct_data, max_epochs=1, use_mlflow=False)
    slices = [tifffile.imread(p) for p in sorted(tiny_ct_data["test"].glob("*.tiff"))]
    hu = invert_hu_window(np.stack(slices, axis=-1))
    nib.save(nib.Nifti1Image(hu.astype(np.float32), np.eye(4)), tmp_path / "volume.nii.gz")
    rows, out = _infer(tmp_path, str(tmp_path / "volume.nii.gz"))
    assert [int(float(r["slice_index"])) for r in rows] == list(range(10))
    (series,) = _index(out)
    assert int(series["n_slices"]) == 10


def test_inference_on_the_shared_dicom_series(tmp_path, tiny_ct_data, shared_ct_series):
    _finetune(tmp_path, tiny_ct_data, max_epochs=1, use_mlflow=False)
    rows, out = _infer(tmp_path, str(shared_ct_series))
    assert len(rows) == 20
    z = [float(r["z"]) for r in rows]
    assert z == sorted(z)
    (series,) = _index(out)
    assert int(series["n_slices"]) == 20 and series["series_description"] == "CT Body 3.0"
    assert float(series["ctdi_vol"]) > 0 and series["manufacturer"] == "SIEMENS"
    scores = list(csv.DictReader(open(out / series["folder"] / "scores.csv")))
    assert [float(r["z"]) for r in scores] == z


def test_rescore_command_reproduces_the_published_numbers(tmp_path, shared_reference_predictions):
    done = _bundle_cli(
        "rescoring",
        "configs/rescore.json",
        predictions_csv=shared_reference_predictions,
        label_column="radiologist_score",
        prediction_column="tfkt_v2_prediction",
        n_boot=100,
        output_dir=tmp_path,
    )
    for line in ("PLCC  0.9462", "SROCC 0.9440", "KROCC 0.8074", "score 2.6976"):
        assert line in done.stdout
    assert json.loads((tmp_path / "rescore" / "metrics.json").read_text())["score"] == pytest.approx(2.6976, abs=5e-5)


def test_runner_tracking_flag_logs_each_metric_once(tmp_path, tiny_ct_data):
    # Default settings: no --output_dir or --ckpt_dir; bundle_root points at a scratch bundle with the real configs.
    (tmp_path / "configs").symlink_to(BUNDLE_ROOT / "configs")
    _bundle_cli(
        "training",
        "configs/train.json",
        "--tracking",
        "mlflow",
        bundle_root=tmp_path,
        dataset_dir=tiny_ct_data["train"],
        max_epochs=2,
        val_fraction=0.25,
        **TINY,
    )
    client, runs = _mlflow_runs(tmp_path)
    assert len(runs) == 1
    history = client.get_metric_history(runs[0].info.run_id, "val_score")
    assert [m.step for m in history] == [1, 2]
    assert "run_config.json" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert len(list((tmp_path / "eval").glob("config_*.json"))) == 1  # the runner's executed-config record


def test_bundle_properties_and_nested_overrides(tmp_path, tiny_ct_data):
    """MONAI Label, Deploy and FL find the standard ids; nested ids override from the command line."""
    train = _workflow(
        "train.json",
        "training",
        **TINY,
        **_dirs(tmp_path),
        dataset_dir=str(tiny_ct_data["train"]),
        workflow_type="train",
        **{"train#dataloader#num_workers": 0, "train#trainer#max_epochs": 3},
    )
    assert train.check_properties() == []
    assert train.parser.get_parsed_content("train#trainer").state.max_epochs == 3
    torch.save(train.parser.get_parsed_content("network_def").state_dict(), tmp_path / "tiny.pt")
    infer = _workflow(
        "inference.json",
        "run",
        network_preset="hybrid_tiny",
        workflow_type="infer",
        dataset_dir=str(tiny_ct_data["test"]),
        ckpt_path=str(tmp_path / "tiny.pt"),
    )
    assert infer.check_properties() == []


def test_multi_gpu_override_trains_with_two_processes(tmp_path, tiny_ct_data):
    """configs/multi_gpu_train.json under torchrun; on a CPU machine DDP runs over gloo."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
    _bundle_cli(
        "training",
        "['configs/train.json','configs/multi_gpu_train.json']",
        launcher=launcher,
        dataset_dir=tiny_ct_data["train"],
        max_epochs=2,
        val_fraction=0.25,
        use_mlflow=False,
        **_dirs(tmp_path),
        **TINY,
    )
    best = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in best)  # loadable without DDP
    last = torch.load(tmp_path / "eval" / "finetune" / "last.pt", weights_only=True)
    # 18 training items over 2 ranks at batch 4, incomplete batches dropped: 2 iterations per rank per epoch.
    assert last["trainer"]["epoch_length"] == 2 and last["trainer"]["iteration"] == 4


def test_training_is_deterministic_on_cpu(tmp_path, tiny_ct_data):
    weights = []
    for run in ("a", "b"):
        _finetune(tmp_path / run, tiny_ct_data, max_epochs=1, use_mlflow=False)
        weights.append(torch.load(tmp_path / run / "eval" / "finetune" / "last.pt", weights_only=True)["model"])
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name


def test_ctrl_c_marks_the_run_killed_and_the_printed_command_continues_it(tmp_path, tiny_ct_data):
    import shlex
    import signal
    import subprocess
    import sys
    import time

    args = {**TINY, **_dirs(tmp_path), "dataset_dir": tiny_ct_data["train"], "val_fraction": 0.25, "max_epochs": 40}
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "configs/train.json"]
    command += [f"--{key}={value}" for key, value in args.items()]
    process = subprocess.Popen(command, cwd=BUNDLE_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "eval" / "finetune" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in out + err
    resume = err.splitlines()[err.splitlines().index("resume with:") + 1].strip()
    assert resume.startswith("python -m monai.bundle run training") and resume.endswith("--resume True")
    client, runs = _mlflow_runs(tmp_path)
    assert [r.info.status for r in runs] == ["KILLED"]
    epochs_before = torch.load(last, weights_only=True)["trainer"]["iteration"]

    again = subprocess.run(
        [sys.executable, *shlex.split(resume)[1:]], cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training finished after 40 epochs" in again.stdout or "early" in again.stdout + again.stderr
    client, runs_after = _mlflow_runs(tmp_path)
    assert [r.info.run_id for r in runs_after] == [runs[0].info.run_id]  # the same MLflow run, continued
    assert runs_after[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_score")]
    assert steps == sorted(set(steps)) and steps[0] == 1 and len(steps) > 1
    assert torch.load(last, weights_only=True)["trainer"]["iteration"] > epochs_before


def _natural_set(kind: str, root):
    """12 scored 40x40 images in the real layout of ``kind`` (see the model card's table of layouts)."""
    import numpy as np
    import pandas as pd
    import scipy.io
    from PIL import Image

    rng = np.random.default_rng(0)
    names = {
        "kadid10k": "I{g:02d}_01_{i:02d}.png",
        "koniq10k": "{i}{g}.jpg",
        "spaq": "{g}{i:04d}.jpg",
        "livec": "{g}{i}.bmp",
        "csv": "img_{g}_{i}.png",
    }[kind]
    folder = {"kadid10k": "images", "koniq10k": "1024x768", "spaq": "TestImage", "livec": "Images", "csv": "pics"}
    rows = []
    for k in range(12):
        name = names.format(g=k // 3 + 1, i=k % 3 + 1)
        path = root / folder[kind] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
        rows.append({"name": name, "score": 1 + 4 * k / 11, "group": f"I{k // 3 + 1:02d}.png"})
    frame = pd.DataFrame(rows)
    if kind == "kadid10k":
        frame.assign(var=0.1).rename(columns={"name": "dist_img", "group": "ref_img", "score": "dmos"})[
            ["dist_img", "ref_img", "dmos", "var"]
        ].to_csv(root / "dmos.csv", index=False)
    elif kind == "koniq10k":
        frame.assign(SD=0.5, MOS_zscore=frame.score * 20).rename(columns={"name": "image_name", "score": "MOS"})[
            ["image_name", "MOS", "SD", "MOS_zscore"]
        ].to_csv(root / "koniq10k_scores_and_distributions.csv", index=False)
    elif kind == "spaq":
        (root / "Annotations").mkdir()
        frame.assign(MOS=frame.score * 20).rename(columns={"name": "Image name"})[["Image name", "MOS"]].to_excel(
            root / "Annotations" / "MOS and Image attribute scores.xlsx", index=False
        )
    elif kind == "livec":
        (root / "Data").mkdir()
        cells = np.empty((len(frame), 1), dtype=object)
        cells[:, 0] = list(frame.name)
        scipy.io.savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": cells})
        scipy.io.savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([frame.score * 20])})
    else:
        frame.assign(image="pics/" + frame.name)[["image", "score"]].to_csv(root / "scores.csv", index=False)
        return root / "scores.csv"
    return root


@pytest.mark.parametrize("kind", ["kadid10k", "koniq10k", "spaq", "livec", "csv"])
def test_pretraining_runs_on_every_documented_dataset_kind(kind, tmp_path):
    dataset = _natural_set(kind, tmp_path / kind)
    extra = {"csv_format": {"score_range": [1, 5], "higher_is_better": True}} if kind == "csv" else {}
    _run(
        ["train.json", "pretrain.json"],
        "pretraining",
        **TINY,
        **_dirs(tmp_path),
        dataset_kind=kind,
        dataset_dir=str(dataset),
        max_epochs=1,
        val_fraction=0.25,
        use_mlflow=False,
        **extra,
    )
    assert (tmp_path / "models" / "pretrained.pt").is_file()
    rows = list(csv.DictReader(open(tmp_path / "eval" / "pretrain" / "val_predictions.csv")))
    assert len(rows) == 3  # a quarter of the 12 images (of the 4 pictures for KADID-10k, kept whole)
    labels = sorted(float(r["label"]) for r in rows)
    assert all(0.0 <= v <= 4.0 for v in labels) and labels != [labels[0]] * 3  # mapped onto 0-4, stratified

"""Bundle metadata and configs: the model-zoo spec, pinned versions, parsing, network I/O."""

import json
from importlib.metadata import version
from pathlib import Path

import monai
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

from conftest import BUNDLE_ROOT, REPO_ROOT

CONFIGS = BUNDLE_ROOT / "configs"
META = CONFIGS / "metadata.json"
SPEC_SCHEMA = Path(__file__).parent / "data" / "meta_schema_spec.json"
TENSOR_KEYS = {
    "type",
    "format",
    "modality",
    "num_channels",
    "spatial_shape",
    "dtype",
    "value_range",
    "is_patch_data",
    "channel_def",
}


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads(META.read_text())


def test_mandatory_fields_and_types(meta):
    for key in (
        "version",
        "monai_version",
        "pytorch_version",
        "numpy_version",
        "task",
        "description",
        "authors",
        "copyright",
        "intended_use",
        "data_source",
        "data_type",
        "schema",
    ):
        assert isinstance(meta[key], str) and meta[key], key
    assert isinstance(meta["required_packages_version"], dict) and meta["required_packages_version"]
    assert isinstance(meta["references"], list) and len(meta["references"]) >= 2
    assert meta["version"] in meta["changelog"]
    assert "optional_packages_version" not in meta, "MONAI 1.6.1 would replace the required list with it"


def test_network_data_format(meta):
    fmt = meta["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    for tensor in (image, pred):
        assert TENSOR_KEYS <= set(tensor)
    assert (image["num_channels"], image["dtype"], image["value_range"], image["modality"]) == (
        1,
        "float32",
        [0, 1],
        "CT",
    )
    assert (pred["num_channels"], pred["dtype"], pred["value_range"]) == (1, "float32", [0, 4])


def test_versions_match_the_installed_stack(meta):
    assert meta["monai_version"] == monai.__version__
    assert meta["pytorch_version"] == torch.__version__.split("+")[0]
    assert meta["numpy_version"] == np.__version__
    for name, pinned in meta["required_packages_version"].items():
        assert version(name) == pinned, name


def test_required_packages_match_requirements_txt(meta):
    pins = dict(
        line.split("==")
        for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for name, pinned in meta["required_packages_version"].items():
        assert pins.get(name) == pinned, name


def test_verify_metadata_with_a_local_schema(tmp_path):
    verify_metadata(meta_file=str(META), filepath=str(SPEC_SCHEMA))
    broken = json.loads(META.read_text())
    del broken["network_data_format"]["outputs"]["pred"]["dtype"]
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    with pytest.raises(Exception, match="dtype"):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(SPEC_SCHEMA))


# Override files are merged over train.json, as the model zoo does for evaluate/multi-GPU configs.
OVERRIDES = {"pretrain.json", "multi_gpu_train.json", "evaluate.json"}  # merged over train.json
# merged over inference.json (the uncertainty one after a backend's, when there is one)
INFERENCE_OVERRIDES = {"inference_onnx.json", "inference_openvino.json", "inference_uncertainty.json"}
STANDALONE = {"train.json", "inference.json", "rescore.json"}
ARGS_FILES = {"onnx_export.json"}  # arguments of a MONAI command (--args_file), not a workflow


def test_every_config_is_an_override_or_stands_alone():
    names = {p.name for p in CONFIGS.glob("*.json")} - {"metadata.json"}
    assert names == OVERRIDES | INFERENCE_OVERRIDES | STANDALONE | ARGS_FILES


def _config_files(name: str) -> list[str]:
    """The files a workflow merges to use ``name``."""
    base = "train.json" if name in OVERRIDES else "inference.json" if name in INFERENCE_OVERRIDES else None
    return [str(CONFIGS / f) for f in (base, name) if f]


@pytest.mark.parametrize("name", sorted(OVERRIDES | INFERENCE_OVERRIDES | STANDALONE))
def test_every_config_parses_from_any_working_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may resolve against the working directory
    files = _config_files(name)
    parser = ConfigParser()
    parser.read_config(files)
    parser.resolve_macro_and_relative_ids()
    config = parser.get()
    assert "imports" in config and "run" in config
    assert not any(isinstance(v, str) and v.startswith("%") and ".json" in v for v in _leaves(config))


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_uncertainty_wraps_whatever_network_the_backend_runs(backend):
    from scripts.command import inference_configs

    plain, spread = ConfigParser(), ConfigParser()
    plain.read_config([str(f) for f in inference_configs(backend)])
    spread.read_config([str(f) for f in inference_configs(backend, uncertainty=True)])
    assert spread["evaluator"]["network"] == plain["evaluator"]["network"]  # the backend's, left as it is
    assert spread["inferer"]["_target_"] == "scripts.nets.tta.DihedralInferer"
    assert spread["evaluator"]["postprocessing"] == "@postprocessing" and "postprocessing" not in plain["evaluator"]


# inference.json stands alone for deployment tools (MONAI Deploy and Label load it by itself): these ids copy
# train.json's and must stay equal to them.
COPIED_IDS = ("bundle_root", "ckpt_dir", "device", "hu_window", "network_preset", "network_def", "network")


def test_inference_copies_equal_train():
    train = json.loads((CONFIGS / "train.json").read_text())
    inference = json.loads((CONFIGS / "inference.json").read_text())
    for key in COPIED_IDS:
        assert inference[key] == train[key], key
    assert inference["ckpt_path"] == train["model_path"]  # inference scores what fine-tuning writes
    assert set(inference["imports"]) <= set(train["imports"]) | {
        "$import scripts.clinical.exam_report",
        "$import scripts.clinical.outputs",
        "$import scripts.ctio.slices",
        "$import scripts.data.stream",
    }


def test_defaults_come_from_their_one_home(meta):
    from scripts.ctio.window import DEFAULT_HU_WINDOW
    from scripts.utils.scores import SCORE_RANGE

    for name in ("train.json", "inference.json"):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / name))
        assert tuple(parser.get_parsed_content("hu_window")) == DEFAULT_HU_WINDOW
    assert tuple(meta["network_data_format"]["outputs"]["pred"]["value_range"]) == SCORE_RANGE
    assert "[-1000, 400]" in meta["network_data_format"]["inputs"]["image"]["channel_def"]["0"]
    assert DEFAULT_HU_WINDOW == (-1000.0, 400.0)


def test_the_bundle_folder_is_self_contained():
    licence = BUNDLE_ROOT / "LICENSE"
    assert licence.is_file() and not licence.is_symlink()  # a copied bundle keeps its licence
    assert licence.read_text() == (REPO_ROOT / "LICENSE").read_text()
    assert (BUNDLE_ROOT / "models" / "README.md").is_file()


@pytest.mark.parametrize("n", [16, 4])  # 512x512 and 128x128 slices
def test_verify_net_in_out(n, monkeypatch):
    monkeypatch.chdir(BUNDLE_ROOT)
    verify_net_in_out(
        net_id="network_def", meta_file=str(META), config_file=str(CONFIGS / "inference.json"), device="cpu", n=n
    )


def test_verify_net_in_out_catches_a_wrong_channel_count(monkeypatch):
    monkeypatch.chdir(BUNDLE_ROOT)
    with pytest.raises(ValueError, match="expected input of shape"):
        verify_net_in_out(
            net_id="network_def",
            meta_file=str(META),
            config_file=str(CONFIGS / "inference.json"),
            device="cpu",
            n=1,
            **{"_meta_#network_data_format#inputs#image#num_channels": 3},
        )


def test_ckpt_export_gives_a_torchscript_model_with_the_bundle_configs(tmp_path, monkeypatch):
    """The model zoo's TorchScript check: MONAI's ckpt_export on a checkpoint of the inference network."""
    from monai.bundle import ckpt_export

    from scripts.nets.networks import create_network

    monkeypatch.chdir(BUNDLE_ROOT)
    torch.manual_seed(0)
    net = create_network("hybrid_tiny").eval()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    ckpt_export(
        "network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(tmp_path / "model.pt"),
        meta_file=str(META),
        config_file=str(CONFIGS / "inference.json"),
        network_preset="hybrid_tiny",
    )
    extra = {"metadata.json": "", "inference.json": ""}
    loaded = torch.jit.load(str(tmp_path / "model.ts"), _extra_files=extra)
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    assert json.loads(extra["metadata.json"])["version"] == json.loads(META.read_text())["version"]
    assert "network_def" in json.loads(extra["inference.json"])

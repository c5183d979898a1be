"""ONNX export (issue 30): ONNX Runtime against PyTorch on the same inputs, gates included, and a
runtime that works where torch cannot be imported."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from garasam.adapters import GaRAConfig, LoRAConfig, MoELoRAConfig, inject_adapters
from garasam.adapters.inspect import adapter_layers
from garasam.cli import main
from garasam.deploy import OnnxPredictor
from garasam.deploy.export import export_onnx
from garasam.errors import CheckpointError, DataError
from garasam.models import build_sam
from garasam.predict.predictor import GaraSamPredictor

pytest.importorskip("onnxruntime")
ASSETS = Path(__file__).resolve().parents[2] / "garasam" / "assets"


def gated_tiny_sam(config: object = None, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """The tiny SAM (or `model`) with GaRA (or `config`) whose gates decide differently per window
    and per image (zero-initialised gates would choose alike everywhere, which would test nothing)."""
    torch.manual_seed(0)
    if model is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_sam("tiny")
    inject_adapters(model, config or GaRAConfig(r_low=4, r_high=8))
    for layer in adapter_layers(model).values():
        for param in layer.parameters():
            if param.requires_grad:
                param.data.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[GaraSamPredictor, OnnxPredictor, Path]:
    model = gated_tiny_sam()
    reference = GaraSamPredictor(copy.deepcopy(model))
    folder = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny_gara")
    return reference, OnnxPredictor(folder), folder


IMAGES = [
    np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    for seed, shape in ((0, (90, 140, 3)), (1, (200, 120, 3)))
]
PROMPTS = [
    {"box": np.array([10, 10, 60, 50])},
    {"point_coords": np.array([[30, 40]]), "point_labels": np.array([1])},
    {
        "point_coords": np.array([[30, 40], [5, 5]]),
        "point_labels": np.array([1, 0]),
        "box": np.array([10, 10, 60, 50]),
    },
]


def test_embeddings_and_gate_decisions_equal_pytorchs(exported) -> None:
    reference, onnx, _ = exported
    chosen = []
    for image in IMAGES:
        reference.set_image(image)
        onnx.set_image(image)
        np.testing.assert_allclose(onnx.embeddings, reference.get_image_embedding().numpy(), atol=1e-4)
        states = [layer.gate_state for layer in adapter_layers(reference.model).values()]
        assert list(onnx.gate_decisions()) == list(adapter_layers(reference.model))
        for state, decision in zip(states, onnx.gate_decisions().values(), strict=True):
            np.testing.assert_array_equal(decision["segment"], state.segment.numpy())
            np.testing.assert_array_equal(decision["active"], state.active.numpy())
        chosen.append(np.concatenate([d["segment"] for d in onnx.gate_decisions().values()]))
    assert not np.array_equal(chosen[0], chosen[1])  # the two images' gates chose differently
    assert 0 < np.concatenate(chosen).mean() < 1  # both spaces in use


@pytest.mark.parametrize("prompt", PROMPTS, ids=["box", "point", "points_and_box"])
@pytest.mark.parametrize("multimask", [True, False])
def test_masks_and_scores_equal_pytorchs(exported, prompt, multimask) -> None:
    reference, onnx, _ = exported
    for image in IMAGES:
        reference.set_image(image)
        onnx.set_image(image)
        ours = onnx.predict(**prompt, multimask_output=multimask)
        theirs = reference.predict(**prompt, multimask_output=multimask)
        assert ours[0].shape == theirs[0].shape == ((3 if multimask else 1), *image.shape[:2])
        assert (ours[0] != theirs[0]).mean() <= 1e-3  # binarised masks: at most 0.1% pixels differ
        np.testing.assert_allclose(ours[1], theirs[1], atol=1e-4)
        np.testing.assert_allclose(ours[2], theirs[2], atol=1e-3)


def test_a_low_res_mask_feeds_back(exported) -> None:
    reference, onnx, _ = exported
    reference.set_image(IMAGES[0])
    onnx.set_image(IMAGES[0])
    _, _, low = onnx.predict(box=[10, 10, 60, 50], multimask_output=False)
    ours = onnx.predict(point_coords=[[30, 40]], point_labels=[1], mask_input=low)
    theirs = reference.predict(point_coords=[[30, 40]], point_labels=[1], mask_input=low)
    np.testing.assert_allclose(ours[2], theirs[2], atol=1e-3)


def test_moe_lora_exports_with_its_router_decisions(tmp_path) -> None:
    model = gated_tiny_sam(MoELoRAConfig(expert_ranks=(2, 4, 8)))
    reference = GaraSamPredictor(copy.deepcopy(model))
    onnx = OnnxPredictor(export_onnx(model, tmp_path / "moe"))
    for image in IMAGES:
        reference.set_image(image)
        onnx.set_image(image)
        states = [layer.gate_state for layer in adapter_layers(reference.model).values()]
        for state, decision in zip(states, onnx.gate_decisions().values(), strict=True):
            np.testing.assert_array_equal(decision["segment"], state.segment.numpy())
        ours, theirs = onnx.predict(box=[10, 10, 60, 50]), reference.predict(box=[10, 10, 60, 50])
        assert (ours[0] != theirs[0]).mean() <= 1e-3


def test_lora_is_merged_and_plain_sam_exports(tmp_path) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = inject_adapters(build_sam("tiny"), LoRAConfig(rank=4))
    for layer in adapter_layers(model).values():
        layer.lora_B.data.normal_(0, 0.05)
    reference = GaraSamPredictor(copy.deepcopy(model).eval())
    onnx = OnnxPredictor(export_onnx(model, tmp_path / "lora"))
    assert json.loads((tmp_path / "lora" / "model.json").read_text())["adapters"]["merged"] is True
    reference.set_image(IMAGES[0])
    onnx.set_image(IMAGES[0])
    np.testing.assert_allclose(onnx.embeddings, reference.get_image_embedding().numpy(), atol=1e-4)
    assert onnx.gate_decisions() == {}


def test_the_runtime_needs_no_torch(exported, tmp_path) -> None:
    """garasam.deploy runs where `import torch` fails."""
    _, onnx, folder = exported
    onnx.set_image(IMAGES[0])
    expected = onnx.predict(box=[10, 10, 60, 50])[1]
    np.save(tmp_path / "image.npy", IMAGES[0])
    script = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
import numpy as np
from garasam.deploy import OnnxPredictor
predictor = OnnxPredictor({str(folder)!r})
predictor.set_image(np.load({str(tmp_path / "image.npy")!r}))
print(repr(predictor.predict(box=[10, 10, 60, 50])[1].tolist()))
assert "transformers" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(eval(done.stdout), expected, atol=1e-6)  # noqa: S307 - our own repr


def test_bad_prompts_and_folders_are_named(exported, tmp_path) -> None:
    _, onnx, _ = exported
    onnx.set_image(IMAGES[0])
    with pytest.raises(DataError, match="non-finite"):
        onnx.predict(box=[0, 0, float("nan"), 10])
    with pytest.raises(DataError, match="x0 < x1"):
        onnx.predict(box=[10, 10, 0, 0])
    with pytest.raises(DataError, match=r"mask_input: expected \[1, 64, 64\]"):
        onnx.predict(box=[0, 0, 10, 10], mask_input=np.zeros((1, 8, 8)))
    with pytest.raises(CheckpointError, match="no model.json"):
        OnnxPredictor(tmp_path)


def _copy_of(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / "copy"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "decoder.onnx").unlink(), r"decoder.onnx: missing"),
        (lambda f: (f / "encoder.onnx").write_bytes(b"\0" * 64), r"encoder.onnx: its sha256 differs"),
        (lambda f: _edit(f, format_version=1), r"this one says version 1\); export the model again"),
        (lambda f: _edit(f, input={"side": "256", "square": False}), r"input.side = '256' is not valid"),
        (lambda f: _edit(f, decoder={"inputs": ["image_embeddings"]}), r"decoder.padding_point is missing"),
        (lambda f: _edit(f, files={"encoder.onnx": "0"}), r"files must list decoder.onnx and encoder.onnx"),
        (lambda f: (f / "model.json").write_text("{"), r"model.json: unreadable"),
    ],
    ids=[
        "missing_graph",
        "changed_graph",
        "old_version",
        "edited_side",
        "edited_decoder",
        "edited_files",
        "not_json",
    ],
)
def test_damaged_export_folders_are_refused_by_name(exported, tmp_path, damage, message) -> None:
    """A graph missing or changed, another version's folder, a hand-edited model.json: one line
    naming the file and what to do, before any session is built."""
    folder = _copy_of(exported[2], tmp_path)
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        OnnxPredictor(folder)


def _edit(folder: Path, **changes: object) -> None:
    path = folder / "model.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_the_command_exports_the_bundled_demo(tmp_path, capsys) -> None:
    out = tmp_path / "exported"
    args = ["export", "--format", "onnx", "--adapters", str(ASSETS / "tiny_gara"), "--out", str(out)]
    assert main(args) == 0
    description = json.loads((out / "model.json").read_text())
    assert description["model_type"] == "tiny" and description["adapters"]["config"]["adapter_type"] == "gara"
    assert len(description["gates"]["adapters"]) == 6
    # the trained demo adapters on a bundled photograph: the same decisions and masks as PyTorch
    from PIL import Image

    from garasam.predict import from_pretrained

    image = np.asarray(Image.open(ASSETS / "samples" / "astronaut.jpg").convert("RGB"))
    reference, onnx = from_pretrained(ASSETS / "tiny_gara", device="cpu"), OnnxPredictor(out)
    reference.set_image(image)
    onnx.set_image(image)
    states = [layer.gate_state for layer in adapter_layers(reference.model).values()]
    for state, decision in zip(states, onnx.gate_decisions().values(), strict=True):
        np.testing.assert_array_equal(decision["segment"], state.segment.numpy())
    box = np.array([100, 50, 400, 450])
    assert (onnx.predict(box=box)[0] != reference.predict(box=box)[0]).mean() <= 1e-3
    assert main(["export", "--format", "pt2", "--precision", "int8", "--out", str(tmp_path / "x")]) == 2
    assert "--format pt2 is fp32" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precisions_export_and_run(precision, tmp_path) -> None:
    """fp16 and int8 (dynamic quantisation) change the numbers: how much is measured in
    docs/deploy.md; here they must run, record their precision, shrink the files and still segment
    (IoU with the fp32 export's mask above 0.5: a sanity bound, not a quality claim)."""
    from garasam.predict import from_pretrained

    folders = {}
    for kind in ("fp32", precision):
        model = from_pretrained(ASSETS / "tiny_gara", device="cpu").model
        folders[kind] = export_onnx(model, tmp_path / kind, precision=kind)
    assert json.loads((folders[precision] / "model.json").read_text())["precision"] == precision
    size = {
        k: sum((f / n).stat().st_size for n in ("encoder.onnx", "decoder.onnx")) for k, f in folders.items()
    }
    assert size[precision] < 0.7 * size["fp32"]
    image = IMAGES[1]
    masks = {}
    for kind, folder in folders.items():
        predictor = OnnxPredictor(folder)
        predictor.set_image(image)
        masks[kind] = predictor.predict(box=[20, 30, 100, 160], multimask_output=False)[0][0]
    union = (masks["fp32"] | masks[precision]).sum()
    assert union and (masks["fp32"] & masks[precision]).sum() / union > 0.5


def test_predict_with_the_onnx_backend_writes_what_the_torch_backend_writes(tmp_path) -> None:
    folder = tmp_path / "exported"
    assert main(["export", "--adapters", str(ASSETS / "tiny_gara"), "--out", str(folder)]) == 0
    sample = str(ASSETS / "samples" / "coffee.jpg")
    prompt = ["--box", "100,80,400,300", "--point", "250,200"]
    assert (
        main(
            [
                "predict",
                sample,
                *prompt,
                "--adapters",
                str(ASSETS / "tiny_gara"),
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "predict",
                sample,
                *prompt,
                "--backend",
                "onnx",
                "--exported",
                str(folder),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    torch_json = json.loads((tmp_path / "t" / "coffee.json").read_text())
    onnx_json = json.loads((tmp_path / "o" / "coffee.json").read_text())
    assert onnx_json["gates"] == torch_json["gates"]  # the same decisions, so the same statistics
    from garasam.predict.masks import decode_rle

    ours, theirs = (decode_rle(j["masks"][0]["segmentation"]) for j in (onnx_json, torch_json))
    assert (ours != theirs).mean() <= 1e-3
    assert onnx_json["model"]["precision"] == "fp32" and onnx_json["model"]["adapters"] == "tiny_gara"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--backend", "onnx"], "--backend onnx needs --exported DIR"),
        (["--exported", "x"], "--exported goes with --backend onnx"),
        (["--backend", "onnx", "--exported", "x", "--adapters", "y"], "leave out --adapters"),
    ],
)
def test_predict_backend_flags_are_checked(extra, message, tmp_path, capsys) -> None:
    sample = str(ASSETS / "samples" / "coffee.jpg")
    assert main(["predict", sample, "--box", "1,1,50,50", *extra, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_torch_export_programs_equal_eager(tmp_path) -> None:
    """`--format pt2`: the same graphs as torch.export programs, loaded back and run through the same
    predictor, equal eager PyTorch (gates included), for any number of points."""
    from garasam.deploy import ExportedPredictor
    from garasam.deploy.export import export_program

    model = gated_tiny_sam()
    reference = GaraSamPredictor(copy.deepcopy(model))
    args = [
        "export",
        "--format",
        "pt2",
        "--adapters",
        str(ASSETS / "tiny_gara"),
        "--out",
        str(tmp_path / "cli"),
    ]
    assert main(args) == 0 and (tmp_path / "cli" / "encoder.pt2").is_file()
    exported = ExportedPredictor(export_program(model, tmp_path / "pt2"))
    assert json.loads((tmp_path / "pt2" / "model.json").read_text())["format"] == "pt2"
    for image in IMAGES:
        reference.set_image(image)
        exported.set_image(image)
        np.testing.assert_allclose(exported.embeddings, reference.get_image_embedding().numpy(), atol=1e-5)
        states = [layer.gate_state for layer in adapter_layers(reference.model).values()]
        for state, decision in zip(states, exported.gate_decisions().values(), strict=True):
            np.testing.assert_array_equal(decision["segment"], state.segment.numpy())
        for prompt in PROMPTS:
            ours, theirs = exported.predict(**prompt), reference.predict(**prompt)
            assert (ours[0] != theirs[0]).mean() <= 1e-3
            np.testing.assert_allclose(ours[1], theirs[1], atol=1e-4)


@pytest.mark.parametrize(
    ("model_type", "fmt"),
    [("hq_tiny", "onnx"), ("robust_tiny", "onnx"), ("sam2.1_mini", "onnx"), ("sam2.1_mini", "pt2")],
)
def test_every_family_exports_and_equals_pytorch(model_type, fmt, tmp_path) -> None:
    """HQ-SAM and RobustSAM (the decoder reads the encoder's early features) and SAM 2.1 (two
    high-resolution maps, the image stretched to the square): embeddings, gate decisions, masks,
    scores and logits as PyTorch computes them."""
    from garasam.deploy import ExportedPredictor
    from garasam.deploy.export import export_program

    model = gated_model(model_type)
    reference = GaraSamPredictor(copy.deepcopy(model))
    if fmt == "onnx":
        exported = ExportedPredictor(export_onnx(model, tmp_path / model_type))
    else:
        exported = ExportedPredictor(export_program(model, tmp_path / model_type, fmt=fmt))
    description = json.loads((tmp_path / model_type / "model.json").read_text())
    assert description["input"]["square"] is (model_type == "sam2.1_mini")
    assert len(description["encoder"]["features"]) == {"hq_tiny": 2, "robust_tiny": 2}.get(model_type, 3)
    assert_equals_pytorch(exported, reference)


def gated_model(model_type: str) -> torch.nn.Module:
    """`model_type` (random weights but the bundled tiny SAM's) with GaRA whose gates vary."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_sam(model_type)
    return gated_tiny_sam(GaRAConfig(r_low=4, r_high=8), model)


def assert_equals_pytorch(exported: object, reference: GaraSamPredictor) -> None:
    """Embeddings, gate decisions, masks, scores and logits of every image and prompt as PyTorch's.
    Random-weight decoders give small logits, so the tolerances are relative to their size."""
    for image in IMAGES:
        reference.set_image(image)
        exported.set_image(image)
        theirs = reference.get_image_embedding().numpy()
        np.testing.assert_allclose(exported.embeddings, theirs, atol=1e-4 * max(1.0, np.abs(theirs).max()))
        states = [layer.gate_state for layer in adapter_layers(reference.model).values()]
        assert len(exported.gate_decisions()) == len(states) > 0
        for state, decision in zip(states, exported.gate_decisions().values(), strict=True):
            np.testing.assert_array_equal(decision["segment"], state.segment.numpy())
            np.testing.assert_array_equal(decision["active"], state.active.numpy())
        for prompt in PROMPTS:
            for multimask in (True, False):
                ours = exported.predict(**prompt, multimask_output=multimask)
                theirs = reference.predict(**prompt, multimask_output=multimask)
                assert ours[0].shape == theirs[0].shape == ((3 if multimask else 1), *image.shape[:2])
                # 1e-3 of the logits' peak, capped at 1e-3 (the trained tiny SAM's logits reach ~30)
                tolerance = 1e-3 * min(1.0, np.abs(theirs[2]).max())
                # masks: a pixel may flip only where PyTorch's logit is within the tolerance of 0
                logits = reference.predict(**prompt, multimask_output=multimask, return_logits=True)[0]
                assert not ((ours[0] != theirs[0]) & (np.abs(logits) > tolerance)).any()
                np.testing.assert_allclose(
                    ours[1], theirs[1], atol=max(tolerance, 1e-4 * np.abs(theirs[1]).max())
                )
                np.testing.assert_allclose(ours[2], theirs[2], atol=tolerance)


@pytest.mark.parametrize("model_type", ["hq_tiny", "robust_tiny", "sam2.1_mini"])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_every_family_exports_at_reduced_precision(model_type, precision, tmp_path) -> None:
    """fp16 and int8 of the other families export, record their precision and run: finite masks and
    scores of the right shapes (their weights are random here, so no accuracy is claimed)."""
    folder = export_onnx(gated_model(model_type), tmp_path / precision, precision=precision)
    assert json.loads((folder / "model.json").read_text())["precision"] == precision
    predictor = OnnxPredictor(folder)
    predictor.set_image(IMAGES[0])
    masks, scores, low_res = predictor.predict(box=[10, 10, 60, 50])
    assert (
        masks.shape == (3, *IMAGES[0].shape[:2]) and np.isfinite(scores).all() and np.isfinite(low_res).all()
    )


@pytest.mark.parametrize(
    ("model_type", "fmt"),
    [("tiny", "aoti"), ("tiny", "pte"), ("hq_tiny", "pte"), ("sam2.1_mini", "pte")],
)
def test_compiled_programs_equal_eager(model_type, fmt, tmp_path) -> None:
    """`--format aoti` (AOTInductor: C++ compiled for this CPU) and `--format pte` (ExecuTorch with
    XNNPACK), loaded back and run by their runtimes, equal eager PyTorch, gates included."""
    from garasam.deploy import ExportedPredictor
    from garasam.deploy.export import export_program

    if fmt == "pte":
        pytest.importorskip("executorch")
    model = gated_tiny_sam() if model_type == "tiny" else gated_model(model_type)
    reference = GaraSamPredictor(copy.deepcopy(model))
    folder = export_program(model, tmp_path / fmt, fmt=fmt)
    assert_equals_pytorch(ExportedPredictor(folder), reference)
    if fmt == "aoti":  # compiled code for one torch: another's package is refused by name
        _edit(folder, torch_version="2.0.0")
        with pytest.raises(CheckpointError, match=r"run only under the torch that compiled them \(2.0.0\)"):
            ExportedPredictor(folder)


def test_pte_without_executorch_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "executorch" else real(name, *a)
    )
    assert main(["export", "--format", "pte", "--out", str(tmp_path / "x")]) == 2
    assert "pip install 'garasam[pte]'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_runtime_normalises_as_the_torch_side_does(exported) -> None:
    """The torch-free runtime restates the normalisation constants: they must equal the torch
    side's and what model.json records."""
    from garasam.data.transforms import PIXEL_MEAN, PIXEL_STD
    from garasam.deploy import geometry

    description = json.loads((exported[2] / "model.json").read_text())
    for ours, theirs, recorded in (
        (geometry.PIXEL_MEAN, PIXEL_MEAN, description["input"]["pixel_mean"]),
        (geometry.PIXEL_STD, PIXEL_STD, description["input"]["pixel_std"]),
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-7)
        np.testing.assert_allclose(recorded, theirs, rtol=1e-7)

"""SAM checkpoints: reading every format we accept, Meta->HF key conversion, writing our own.

Accepted inputs (detected from the content, not the file name):
- Meta's official `.pth` state dict (`image_encoder.*`, `prompt_encoder.*`, `mask_decoder.*`),
  converted to the transformers layout by renaming keys; HQ-SAM's (`sam_hq_vit_*.pth`) and
  RobustSAM's (`robustsam_checkpoint_*.pth`) releases are the same layout plus their decoder parts;
- a transformers-layout state dict, plain, wrapped as `{"model": ...}` / `{"state_dict": ...}`, or
  with DDP's `module.` prefix;
- a Hugging Face `save_pretrained` folder (config.json + model.safetensors or pytorch_model.bin);
- a `.safetensors` file in either key layout.

Everything is checked against the model being built before a single tensor is copied: a file
that cannot be read, belongs to another model type, or has missing or unexpected keys raises
`CheckpointError` naming the file and the problem, never a traceback from inside torch.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import PreTrainedModel, Sam2VideoModel

from garasam.errors import CheckpointError, ConfigError
from garasam.io import file_sha256, save_safetensors
from garasam.models.registry import (
    CONFIG_CLASSES,
    FAMILIES,
    MODEL_TYPES,
    architecture,
    encoder_shape_of_config,
    family_of,
    family_of_config,
    model_type_of_config,
    model_type_of_encoder,
    sam_config,
    sam_config_from_dict,
)
from garasam.models.sam2 import HF_VIDEO_ONLY, from_meta_sam2, is_meta_sam2

# transformers ties the prompt encoder's positional embedding to the model-level one; files carry
# either key or both (save_pretrained drops the second, Meta's conversion yields the second).
TIED_POSITIONAL_KEYS = (
    "shared_image_embedding.positional_embedding",
    "prompt_encoder.shared_embedding.positional_embedding",
)
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_MAX_LISTED_KEYS = 5


def _by_index(names: dict[str, str]) -> Callable[[re.Match[str]], str]:
    """A replacement for `.<index>.` that maps nn.Sequential indices to transformers' module names."""
    return lambda match: f".{names[match[1]]}."


def _sequence(first: str, norm: str, second: str) -> dict[str, str]:
    """conv, LayerNorm2d, activation, conv: the Sequential indices 0, 1, 3 of the official heads."""
    return {"0": first, "1": norm, "3": second}


# Meta's key -> transformers' key, applied in order to each key (transformers' original
# convert_sam_original_to_hf_format.py, checked numerically against segment_anything in the tests).
_META_RENAMES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^image_encoder\.", "vision_encoder."),
        (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
        (r"\.blocks\.", ".layers."),
        (r"\.norm(\d|_final_attn)\.", r".layer_norm\1."),
        (
            r"\.neck\.([0-3])\.",
            _by_index(
                {"0": "neck.conv1", "1": "neck.layer_norm1", "2": "neck.conv2", "3": "neck.layer_norm2"}
            ),
        ),
        (
            r"\.mask_downscaling\.([01346])\.",
            _by_index(
                {
                    "0": "mask_embed.conv1",
                    "1": "mask_embed.layer_norm1",
                    "3": "mask_embed.conv2",
                    "4": "mask_embed.layer_norm2",
                    "6": "mask_embed.conv3",
                }
            ),
        ),
        (
            r"\.output_upscaling\.([013])\.",
            _by_index({"0": "upscale_conv1", "1": "upscale_layer_norm", "3": "upscale_conv2"}),
        ),
        (r"\.point_embeddings\.", ".point_embed."),
        (r"\.pe_layer\.positional_encoding_gaussian_matrix$", ".shared_embedding.positional_embedding"),
        # HQ-SAM's decoder (transformers' SamHQMaskDecoder names)
        (r"\.hf_token\.", ".hq_token."),
        (r"\.hf_mlp\.", ".hq_mask_mlp."),
        (
            r"\.compress_vit_feat\.([013])\.",
            _by_index(_sequence("compress_vit_conv1", "compress_vit_norm", "compress_vit_conv2")),
        ),
        (
            r"\.embedding_encoder\.([013])\.",
            _by_index(_sequence("encoder_conv1", "encoder_norm", "encoder_conv2")),
        ),
        (
            r"\.embedding_maskfeature\.([013])\.",
            _by_index(_sequence("mask_conv1", "mask_norm", "mask_conv2")),
        ),
        # RobustSAM's decoder (garasam.models.robust_sam names)
        (r"\.custom_robust_token\.", ".robust_tokens."),
        (r"\.custom_token_block\.mlp\.([02])\.", _by_index({"0": "token_block.fc1", "2": "token_block.fc2"})),
        (r"\.fourier_first_layer_features\.", ".early_feature_block."),
        (r"\.fourier_last_layer_features\.", ".final_feature_block."),
        (r"\.fourier_mask_features\.", ".mask_feature_block."),
        (
            r"\.dnc_block_combined\.channel_attention\.excitation\.([02])\.",
            _by_index({"0": "normalise.channel_attention.fc1", "2": "normalise.channel_attention.fc2"}),
        ),
        (r"\.dnc_block_combined\.SEMBlock\.maxpool_conv\.0\.", ".normalise.selective."),
        (r"\.selective\.conv1\.", ".selective.conv_batch."),
        (r"\.selective\.conv2\.", ".selective.conv_instance."),
        (r"\.selective\.BN\.", ".selective.batch_norm."),
        (r"\.selector\.fc\.0\.", ".selector.fc."),
        (r"\.selector\.att_conv1\.", ".selector.attention_a."),
        (r"\.selector\.att_conv2\.", ".selector.attention_b."),
        (r"\.fgm_block\.conv_layer\.", ".fourier_conv."),
        (r"_feature_block\.conv_layer\.", "_feature_block.fuse."),
        (
            r"\.(?:up|down)sample_layer\.([013])\.",
            _by_index(_sequence("head.conv1", "head.norm", "head.conv2")),
        ),
    )
)
# Meta's MLPs number their Linears layers.0..N-1; transformers names them proj_in, layers.*, proj_out.
_META_MLP = re.compile(
    r"^(mask_decoder\.(?:iou_prediction_head|output_hypernetworks_mlps\.\d+|hf_mlp|robust_mlp))\.layers\.(\d+)\."
)
_META_ONLY = re.compile(
    r"^image_encoder\.|\.pe_layer\.|\.mask_downscaling\.|\.output_upscaling\.|\.point_embeddings\."
)
_META_DROPPED = ("pixel_mean", "pixel_std")  # preprocessing constants, not weights
# The encoder blocks and the first block's qkv: SAM 1's ViT, SAM 2's Hiera (transformers layout).
_ENCODER_LAYER = re.compile(r"^vision_encoder\.(?:layers|backbone\.blocks)\.(\d+)\.")
_QKV_KEYS = ("vision_encoder.layers.0.attn.qkv.weight", "vision_encoder.backbone.blocks.0.attn.qkv.weight")
# A key only each family's model has (transformers layout), to name the family of a checkpoint.
_FAMILY_KEYS = {
    "hq": "mask_decoder.hq_token.weight",
    "robust": "mask_decoder.robust_tokens.weight",
    "sam2": "no_memory_embedding",
}


def load_sam_weights(
    model: PreTrainedModel, path: str | os.PathLike, model_type: str, device: torch.device
) -> None:
    """Fill `model` (built for `model_type`, usually on the meta device) with the weights at `path`.

    Tensors are cast to the model's parameter dtypes and placed on `device` one by one, then assigned
    (not copied), so a big checkpoint is never held twice in memory.
    """
    source = Path(path)
    if source.is_dir():
        source = _check_hf_folder(source, model_type)
    video = is_video_model(model)
    state = _to_hf_layout(_read_state_dict(source), video)
    if not video:  # a video-mode file read for image mode: its memory modules have no place here
        state = {key: value for key, value in state.items() if not HF_VIDEO_ONLY.search(key)}
    elif not any(HF_VIDEO_ONLY.search(key) for key in state):
        raise CheckpointError(
            f"{source}: holds SAM 2.1's image path only (no memory attention, memory encoder or object "
            "pointers), which video mode needs: give Meta's .pt file or a Sam2VideoModel folder"
        )
    expected = model.state_dict()
    _check_state_dict(state, expected, model_type, source)
    for key, reference in expected.items():
        state[key] = state[key].to(device=device, dtype=reference.dtype)
        # no official format has a checksum: a damaged file can hold NaN or inf, which no SAM was trained to
        if state[key].is_floating_point() and not torch.isfinite(state[key]).all():
            raise CheckpointError(
                f"{source}: {key} holds non-finite values (NaN or inf); the file is damaged"
            )
    model.load_state_dict(state, strict=True, assign=True)
    tie_positional_embedding(model)


def tie_positional_embedding(model: PreTrainedModel) -> None:
    """Share one positional-embedding Parameter, as transformers does, when both copies agree.

    Materialising a meta model or assigning loaded tensors gives each module its own Parameter;
    a checkpoint whose two copies differ keeps both, like transformers' own loader. SAM 2's two copies
    are separate buffers in transformers (its save_pretrained refuses them shared): left apart.
    """
    if family_of_config(model.config) == "sam2":
        return
    source = model.shared_image_embedding
    target = model.prompt_encoder.shared_embedding
    if torch.equal(source.positional_embedding, target.positional_embedding):
        target.positional_embedding = source.positional_embedding


ADAPTED_SAVE_HINT = (
    "this SAM carries adapters, and a whole-model file of it would not load as SAM (its qkv layers are "
    "wrapped): save it with model.save_pretrained(dir) (adapters + a reference to the base checkpoint, "
    "read back by garasam.GaraSam.from_pretrained), or the adapters alone with garasam.save_adapters, or "
    "for LoRA fold them in first with garasam.adapters.merge_and_unload(model)"
)


def save_sam(model: PreTrainedModel, path: str | os.PathLike) -> None:
    """Write `model`'s weights to a safetensors file atomically, its model type in the metadata.

    A model with adapter layers is refused (its file would not load as SAM): save the adapters apart.
    """
    if any(name.endswith(".lora_A") for name, _ in model.named_parameters()):  # wrapped by an adapter
        raise ConfigError(ADAPTED_SAVE_HINT)
    model_type = model_type_of_config(model.config)
    if model_type is None:
        raise ValueError(
            f"cannot save a SAM whose config matches none of the model types {sorted(MODEL_TYPES)}"
        )
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in storages:  # safetensors refuses aliased tensors: the tied embedding is stored twice
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        tensors[key] = tensor
    save_safetensors(tensors, path, {"format": "pt", "garasam_model_type": model_type})


def identify_checkpoint(path: str | os.PathLike) -> dict[str, object]:
    """Name, size and sha256 prefix of a checkpoint's weights.

    Adapter folders record this so that an adapter is never silently applied to another SAM than the
    one it was trained on. For a Hugging Face folder the weights file is hashed, not config.json.
    """
    source = Path(path)
    weights = _hf_weights_file(source) if source.is_dir() else source
    if not weights.is_file():
        raise CheckpointError(f"{source}: no such checkpoint file or folder")
    return {"name": source.name, "size": weights.stat().st_size, "sha256": file_sha256(weights)[:16]}


def _check_hf_folder(folder: Path, model_type: str) -> Path:
    """Check a save_pretrained folder's config.json against `model_type`; return its weights file."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{folder}: a folder without config.json; expected a Hugging Face save_pretrained folder"
        )
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{config_file}: unreadable ({_first_line(err)})") from err
    declared = data.get("model_type") if isinstance(data, dict) else None
    if declared not in CONFIG_CLASSES:
        raise CheckpointError(f"{config_file}: describes a {declared!r} model, not SAM")
    try:
        config = sam_config_from_dict(data)
    except Exception as err:  # transformers' strict config dataclasses raise several error types
        raise CheckpointError(f"{config_file}: not a valid SAM config ({_first_line(err)})") from err
    if architecture(config) != architecture(sam_config(model_type)):
        found = model_type_of_config(config)
        width, blocks = encoder_shape_of_config(config)
        described = (
            f"a {found} model"
            if found
            else f"a SAM of none of our model types (image encoder width {width}, {blocks} blocks)"
        )
        raise CheckpointError(f"{config_file}: describes {described}, not {model_type}")
    return _hf_weights_file(folder)


def _hf_weights_file(folder: Path) -> Path:
    for name in HF_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(
        f"{folder}: no weights file in this folder (expected {' or '.join(HF_WEIGHT_FILES)})"
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a torch or safetensors file (told apart by content) into a flat dict of tensors."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head[8:9] == b"{":  # safetensors: 8-byte header length, then the JSON header
        try:
            return _flat_tensors(load_file(path), path)
        except SafetensorError as err:
            raise CheckpointError(
                f"{path}: cannot be read as safetensors, the file is truncated or corrupt ({err})"
            ) from err
    if head.startswith(b"PK\x03\x04"):
        _check_torch_zip(path)
    elif not head.startswith(b"\x80"):  # torch's legacy format is a bare pickle
        hint = (
            " (a Git LFS pointer: fetch the real file with `git lfs pull`)"
            if head.startswith(b"version https://git-lfs")
            else ""
        )
        raise CheckpointError(f"{path}: neither a PyTorch nor a safetensors checkpoint{hint}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise CheckpointError(f"{path}: corrupt PyTorch checkpoint ({_first_line(err)})") from err
        raise CheckpointError(
            f"{path}: holds Python objects besides tensors, and loading it would need "
            "weights_only=False, which can run arbitrary code; re-save it as a plain state dict "
            "(torch.save(model.state_dict(), path))"
        ) from err
    except Exception as err:  # a damaged file surfaces as RuntimeError, OSError, EOFError, KeyError...
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint, the file is truncated or corrupt "
            f"({_first_line(err)})"
        ) from err
    return _flat_tensors(_unwrap(loaded), path)


def _check_torch_zip(path: Path) -> None:
    """Tell a truncated download and a foreign zip apart before torch reports an obscure error."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as err:
        raise CheckpointError(f"{path}: truncated or corrupt zip archive ({err})") from err
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        raise CheckpointError(f"{path}: a zip archive, but not a PyTorch checkpoint (no data.pkl inside)")


def _unwrap(loaded: object) -> object:
    """The state dict inside a training checkpoint such as {"model": ..., "epoch": ...}."""
    if isinstance(loaded, Mapping) and not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in ("model", "state_dict"):
            if isinstance(loaded.get(key), Mapping):
                return loaded[key]
    return loaded


def _flat_tensors(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """Check that `loaded` is a non-empty {name: tensor} dict and drop a DDP `module.` prefix."""
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    if not loaded:
        raise CheckpointError(f"{path}: holds no tensors")
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: not a state dict: entry {key!r} is of type {type(value).__name__}, not a tensor "
                f"(top-level keys: {_listing(list(loaded))})"
            )
    state = dict(loaded)
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def is_video_model(model: torch.nn.Module) -> bool:
    """Whether `model` is SAM 2.1 in video mode (transformers' `Sam2VideoModel`)."""
    return isinstance(model, Sam2VideoModel)


def _to_hf_layout(state: dict[str, torch.Tensor], video: bool = False) -> dict[str, torch.Tensor]:
    """Rename Meta keys to transformers' (SAM 2's video modules kept in `video` mode) and fill in the
    tied positional-embedding key."""
    if is_meta_sam2(state):
        state = from_meta_sam2(state, video=video)
    elif any(_META_ONLY.search(key) for key in state):
        state = _from_meta_layout(state)
    source, target = TIED_POSITIONAL_KEYS
    if source in state and target not in state:
        state[target] = state[source].clone()  # a copy: SAM 2 keeps the two apart (tie_positional_embedding)
    elif target in state and source not in state:
        state[source] = state[target].clone()
    return state


def _from_meta_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mlp_depths: dict[str, int] = {}
    for key in state:
        if match := _META_MLP.match(key):
            mlp_depths[match[1]] = max(mlp_depths.get(match[1], 0), int(match[2]) + 1)

    def rename_mlp(match: re.Match[str]) -> str:
        index, last = int(match[2]), mlp_depths[match[1]] - 1
        name = "proj_in" if index == 0 else "proj_out" if index == last else f"layers.{index - 1}"
        return f"{match[1]}.{name}."

    converted = {}
    for key, value in state.items():
        if key in _META_DROPPED:
            continue
        new_key = _META_MLP.sub(rename_mlp, key)
        for pattern, replacement in _META_RENAMES:
            new_key = pattern.sub(replacement, new_key)
        converted[new_key] = value
    return converted


def _check_state_dict(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], model_type: str, path: Path
) -> None:
    """Raise CheckpointError unless `state` has exactly the keys and shapes of `expected`."""
    encoder = _encoder_shape(state)
    spec = MODEL_TYPES[model_type]
    family = next((name for name, key in _FAMILY_KEYS.items() if key in state), "sam")
    if family != family_of(model_type):
        found = model_type_of_encoder(*encoder, family) if encoder else None
        hint = f"; build it as {found!r}" if found else ""
        raise CheckpointError(
            f"{path}: this checkpoint holds {FAMILIES[family][1]} (it has "
            f"{_FAMILY_KEYS.get(family, 'no HQ-SAM, RobustSAM or SAM 2 part')}), not "
            f"{FAMILIES[family_of(model_type)][1]} ({model_type}){hint}"
        )
    if encoder is not None and encoder != (spec.hidden_size, spec.num_hidden_layers):
        found = model_type_of_encoder(*encoder, family)
        if found is not None:
            raise CheckpointError(
                f"{path}: this is a {found} checkpoint (image encoder width {encoder[0]}, {encoder[1]} "
                f"blocks), not {model_type}; build it as {found!r}"
            )
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        problems = [f"{len(missing)} missing keys ({_listing(missing)})"] if missing else []
        problems += [f"{len(unexpected)} unexpected keys ({_listing(unexpected)})"] if unexpected else []
        raise CheckpointError(f"{path}: does not fit a {model_type} SAM: {'; '.join(problems)}")
    wrong = [
        f"{key} is {tuple(state[key].shape)}, expected {tuple(value.shape)}"
        for key, value in expected.items()
        if state[key].shape != value.shape
    ]
    if wrong:
        described = f" (image encoder width {encoder[0]}, {encoder[1]} blocks)" if encoder else ""
        raise CheckpointError(
            f"{path}: does not fit a {model_type} SAM{described}: {len(wrong)} tensors have the wrong "
            f"shape ({_listing(wrong)})"
        )


def _encoder_shape(state: Mapping[str, torch.Tensor]) -> tuple[int, int] | None:
    """(width, depth) of the image encoder in a transformers-layout state dict, if it has one."""
    qkv = next((state[key] for key in _QKV_KEYS if key in state), None)
    layers = {int(match[1]) for key in state if (match := _ENCODER_LAYER.match(key))}
    if qkv is None or qkv.ndim != 2 or not layers:
        return None
    return int(qkv.shape[1]), max(layers) + 1


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED_KEYS])
    return shown if len(items) <= _MAX_LISTED_KEYS else f"{shown}, ... {len(items) - _MAX_LISTED_KEYS} more"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__

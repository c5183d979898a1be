"""Hugging Face Hub ids (`facebook/sam-vit-base`) as checkpoints, resolved through the local cache.

An id is looked up in the Hugging Face cache first (`HF_HOME` / `HF_HUB_CACHE`, as transformers
does). Only when it is not there and `HF_HUB_OFFLINE` is unset is it downloaded (config and
safetensors only); offline, the message says how to get it. A path that exists is never taken for an id.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from garasam.errors import CheckpointError
from garasam.models.registry import model_type_name, model_type_of_config, sam_config_from_dict

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def is_hub_id(spec: str | os.PathLike | None) -> bool:
    """`org/name` that is not a local path (nor a weights file name: `weights/sam.pth` is a path)."""
    if spec is None:
        return False
    text = os.fspath(spec)
    return bool(_HUB_ID.match(text)) and not text.endswith(_WEIGHT_SUFFIXES) and not Path(text).exists()


def resolve(spec: str | os.PathLike) -> Path:
    """The local folder of Hub id `spec`: its cached snapshot, downloaded first when online."""
    spec = os.fspath(spec)
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE, HF_HUB_OFFLINE
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(spec, local_files_only=True))
    except LocalEntryNotFoundError:
        if HF_HUB_OFFLINE:
            raise CheckpointError(
                f"{spec}: no such local path, and as a Hugging Face model id not in the local cache "
                f"({HF_HUB_CACHE}) while HF_HUB_OFFLINE is set; fetch it where the Hub is reachable "
                f"(`hf download {spec}`) or give a local path"
            ) from None
    except ValueError as err:  # a malformed id
        raise CheckpointError(f"{spec}: not a Hugging Face model id ({err})") from None
    try:
        return Path(snapshot_download(spec, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as err:  # network, authentication, a missing repository
        raise CheckpointError(f"{spec}: could not be fetched from the Hugging Face Hub ({err})") from None


def folder_model_type(folder: Path) -> str | None:
    """The model type a save_pretrained folder's config.json describes, or None."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return model_type_of_config(sam_config_from_dict(data))
    except Exception:  # no config, not JSON, not SAM: the checkpoint reader reports it properly
        return None


def infer_model_type(checkpoint: str | os.PathLike) -> str | None:
    """The model type of a checkpoint, from what it is: a Hub id's or a folder's config.json, else a
    type named in the file name (`sam_vit_b_01ec64.pth`); None when nothing tells."""
    if is_hub_id(str(checkpoint)):
        return folder_model_type(resolve(str(checkpoint)))
    path = Path(checkpoint)
    if path.is_dir():
        return folder_model_type(path)
    if match := _OFFICIAL_NAMES.search(path.name):
        family, size = next((name, value) for name, value in match.groupdict().items() if value)
        if family == "sam2":
            return f"sam2.1_hiera_{_SAM2_SIZES[size]}"
        return model_type_name(family, f"vit_{size}")
    from garasam.models.registry import MODEL_TYPES

    named = [t for t in MODEL_TYPES if t in path.name]
    return named[0] if len(named) == 1 else None


# The released file names of the families: sam_vit_b_01ec64.pth, sam_hq_vit_l.pth,
# robustsam_checkpoint_h.pth, sam2.1_hiera_base_plus.pt (the HQ and SAM names share "vit_b", hence a
# pattern, not a substring).
_OFFICIAL_NAMES = re.compile(
    r"^(?:sam_hq_vit_(?P<hq>[blh])\.pth|sam_vit_(?P<sam>[blh])_[0-9a-f]{6}\.pth|robustsam_checkpoint_(?P<robust>[blh])\.pth"
    r"|sam2\.1_hiera_(?P<sam2>tiny|small|base_plus|large)\.pt)$"
)
_SAM2_SIZES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}

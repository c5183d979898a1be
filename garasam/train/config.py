"""Typed training configuration: YAML recipes plus `key=value` overrides, checked before anything runs.

Every section is a pydantic model with `extra="forbid"`, so a typo'd key or a value of the wrong type
stops the run at once with a `ConfigError` that names the dotted key (`optim.lrr`, `run.batch_size`)
and where it came from (the YAML file or the override). The `adapter` section is the adapter config of
`garasam.adapters` (checked by its dataclass). Defaults are the paper's recipe for ViT-B (section 3
of the reference); the paper's gaps (schedule, prompts, IoU loss) are our documented decisions.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from garasam.adapters.config import CONFIG_TYPES, LEGACY_QKV_TARGETS, QKV_TARGETS, AdapterConfig, GaRAConfig
from garasam.errors import ConfigError, GarasamError
from garasam.models.registry import MODEL_TYPES

# Keys that may change between the runs of one training (resuming a longer run, logging more often,
# another machine) without making it another run; everything else enters the config hash.
RESUMABLE_KEYS: tuple[str, ...] = (
    "output_dir",
    "resume",
    "overwrite",
    "run.max_steps",
    "run.device",
    "run.num_workers",
    "run.fast_encoder",  # kernels and memory, not the function trained
    "run.activation_checkpointing",
    "checkpoint",
    "logging",
)


class Section(BaseModel):
    """A config section: unknown keys are errors; values are validated on assignment too."""

    # NaN slips through fields without bounds and inf through every lower bound: refuse both everywhere.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelSection(Section):
    model_type: Literal[tuple(MODEL_TYPES)] = "vit_b"  # type: ignore[valid-type]  # SAM, hq_*, robust_*, sam2.1_*
    checkpoint: str | None = (
        None  # SAM weights (Meta .pth, safetensors, HF folder); None = random / bundled tiny
    )
    # Start from trained adapters (a folder save_adapters wrote) instead of fresh ones: fine-tuning,
    # e.g. the paper's Table a4. Their config must be the run's `adapter` section; their backbone
    # identity is checked against this model as on every load.
    init_adapters: str | None = None


class DegradedData(Section):
    """Training data and how it is degraded: what image and video recipes share."""

    train: list[str] = Field(default_factory=list)  # `reader:path` specs, concatenated
    suite: Literal["robustseg", "imagenet-c"] = "robustseg"
    # Sampling weight per degradation name ("clean" included); None = uniform over clean + the suite.
    degradation_weights: dict[str, float] | None = None
    severity: int | None = None  # imagenet-c severity; None = a random severity per sample

    @field_validator("train", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _weights(self) -> DegradedData:
        if self.degradation_weights is not None:
            check_degradations(self.suite, list(self.degradation_weights))
            weights = self.degradation_weights.values()
            if min(weights) < 0 or sum(weights) <= 0:
                raise ValueError("degradation_weights must be >= 0 with a positive sum")
        return self


class DataSection(DegradedData):
    min_area: int = Field(0, ge=0)  # objects smaller than this (pixels) are not training targets
    max_objects_per_image: int = Field(8, ge=1)  # random subset per image per step, bounds memory
    strict: bool = False  # True: stop at the first unreadable sample instead of skipping it


class PromptSection(Section):
    max_points: int = Field(3, ge=1)
    box_jitter: float = Field(0.1, ge=0)
    p_box: float = Field(0.5, ge=0, le=1)
    # "single_point": one positive point is ambiguous, so SAM predicts 3 masks and only the best (lowest
    # loss) one is trained (SAM's recipe); 2-3 points and boxes use the single-mask output.
    # "off": single-mask output for every prompt.
    multimask: Literal["single_point", "off"] = "single_point"


class LossSection(Section):
    focal_weight: float = Field(20.0, ge=0)
    dice_weight: float = Field(1.0, ge=0)
    # MSE between the IoU head's prediction and the mask's real IoU (SAM's recipe). The paper names
    # only dice + focal; the frozen IoU head still ranks multimask outputs at test time, so we keep it
    # calibrated by default. Set 0 for the paper's literal loss.
    iou_weight: float = Field(1.0, ge=0)
    focal_gamma: float = Field(2.0, ge=0)
    focal_alpha: float = Field(0.25, ge=0, le=1)
    # The paper cites the generalised Dice loss (Sudre et al. 2017); SAM and RobustSAM, whose recipe we
    # follow, train soft Dice. "generalised" weighs object and background by inverse squared area.
    dice: Literal["soft", "generalised"] = "soft"


class OptimSection(Section):
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float | None = Field(1.0, gt=0)  # max global grad norm; None = no clipping


class ScheduleSection(Section):
    epochs: int = Field(20, ge=1)
    decay_epochs: list[float] = Field(default_factory=lambda: [10.0])  # lr x gamma at each of these
    gamma: float = Field(0.1, gt=0)


class RunSection(Section):
    batch_size: int = Field(8, ge=1)  # global batch: split evenly over the processes of a DDP run
    max_steps: int | None = Field(None, ge=1)  # stop here instead of after `epochs`; decays scale along
    seed: int = Field(0, ge=0, le=2**32 - 1)  # NumPy's and torch's generators take 32 / 64 bits
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    activation_checkpointing: bool = False  # recompute encoder blocks in backward: less memory, ~30% slower
    fast_encoder: bool | None = None  # garasam.fast.encoder in training; None: on for CUDA, off on CPU
    deterministic: bool = False  # torch.use_deterministic_algorithms (bitwise resume on CPU)
    num_workers: int = Field(4, ge=0)
    max_nonfinite_steps: int = Field(10, ge=1)  # consecutive NaN/inf steps before the run stops


class ValidationSection(Section):
    data: str | None = None  # `reader:path` of a held-out set
    fraction: float = Field(0.0, ge=0, lt=1)  # else hold out this fraction of the training data
    every_steps: int | None = Field(None, ge=1)  # None: at the end of every epoch (and of the run)
    max_images: int = Field(16, ge=1)
    batch_size: int = Field(8, ge=1)
    prompt: Literal["point", "box"] = "box"
    degradations: list[str] | None = None  # None: clean + the whole training suite


class CheckpointSection(Section):
    every_steps: int = Field(1000, ge=1)
    keep_last: int = Field(3, ge=1)


class LoggingSection(Section):
    every_steps: int = Field(10, ge=1)
    tensorboard: bool = True
    progress: bool = True


class TrainConfig(Section):
    """A complete training run. `train(config)` needs nothing else."""

    model_config = ConfigDict(**Section.model_config, arbitrary_types_allowed=True)  # the adapter dataclass

    output_dir: str | None = None
    resume: bool | Literal["auto"] = False  # True: continue (a checkpoint must exist); auto: if one exists
    overwrite: bool = False  # replace another run's checkpoints in output_dir
    model: ModelSection = Field(default_factory=ModelSection)
    # Read from a mapping ({adapter_type: gara, r_low: 16, ...}), held as the garasam.adapters config
    # itself, written back as that mapping (to_dict).
    adapter: AdapterConfig = Field(default_factory=GaRAConfig)
    data: DataSection = Field(default_factory=DataSection)
    prompts: PromptSection = Field(default_factory=PromptSection)
    loss: LossSection = Field(default_factory=LossSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    run: RunSection = Field(default_factory=RunSection)
    validation: ValidationSection = Field(default_factory=ValidationSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)

    @field_validator("adapter", mode="before")
    @classmethod
    def _adapter(cls, value: Any) -> Any:
        if isinstance(value, AdapterConfig) or not isinstance(value, dict):
            return value  # a config object as it is; pydantic reports any other type
        kind = value.get("adapter_type", "gara")
        if kind not in CONFIG_TYPES:
            raise ValueError(f"unknown adapter_type {kind!r}; expected one of {sorted(CONFIG_TYPES)}")
        fields = {k: v for k, v in value.items() if k != "adapter_type"}
        if fields.get("target_modules") == LEGACY_QKV_TARGETS:  # recipes written before SAM 2
            fields["target_modules"] = QKV_TARGETS
        valid = [f.name for f in dataclasses.fields(CONFIG_TYPES[kind])]
        unknown = [key for key in fields if key not in valid]
        if unknown:
            raise ValueError(
                f"unknown {kind} adapter key {unknown[0]!r} (valid keys: {', '.join(['adapter_type', *valid])})"
            )
        try:
            return _adapter_validator(kind).validate_python(fields)  # the dataclass, its types checked
        except ValidationError as err:
            raise ValueError("; ".join(_describe_adapter_error(e) for e in err.errors())) from None
        except GarasamError as err:  # the dataclass's own checks (ranges, regexes)
            raise ValueError(str(err)) from None

    @field_serializer("adapter")
    def _adapter_mapping(self, adapter: AdapterConfig) -> dict[str, Any]:
        return adapter.to_dict()

    @model_validator(mode="after")
    def _validation_degradations(self) -> TrainConfig:
        if self.validation.degradations is not None:
            check_degradations(self.data.suite, self.validation.degradations, "validation.degradations")
        return self

    def adapter_config(self) -> AdapterConfig:
        """The adapter section as a `garasam.adapters` config object."""
        return self.adapter

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML types only (tuples become lists), for files and checkpoints."""
        return json.loads(self.model_dump_json())

    def identity(self) -> dict[str, Any]:
        """The config without the keys a resumed run may change (RESUMABLE_KEYS)."""
        data = self.to_dict()
        for key in RESUMABLE_KEYS:
            _pop_dotted(data, key)
        return data

    def config_hash(self) -> str:
        """Identity of the run as a short hash: two runs with the same hash may resume each other."""
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.cache
def _adapter_validator(kind: str) -> TypeAdapter:
    """pydantic's validation of an adapter dataclass's field types (then its own `__post_init__`)."""
    return TypeAdapter(CONFIG_TYPES[kind])


def _describe_adapter_error(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"])
    return f"{key}: {error['msg']} (got {error['input']!r})"


def check_degradations(suite: str, names: list[str], where: str = "") -> None:
    """Every name must be a degradation of `suite` (or "clean")."""
    from garasam.data.degradations import get_degradation

    for name in names:
        try:
            get_degradation(suite, name)
        except GarasamError as err:
            raise ValueError(f"{where}: {err}" if where else str(err)) from None


def load_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    settings: Mapping[str, Any] | None = None,
    config_class: type[TrainConfig] | None = None,
) -> TrainConfig:
    """Read a YAML recipe (or start from the defaults), set `settings` (dotted key -> value, typed:
    what `garasam train`'s flags give) and then apply the `key=value` overrides.

    Override values are parsed as YAML (`optim.lr=1e-3`, `schedule.decay_epochs=[5,8]`, `x=null`).
    `adapter.adapter_type=lora` on a recipe of another adapter type starts that section afresh, so
    `adapter.adapter_type=lora adapter.rank=8` turns any recipe into a LoRA-8 run. `config_class`:
    another recipe type built the same way (video training's, `garasam.video.train_config`).
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        data = read_recipe(Path(path))
        validate(data, source, config_class=config_class)
    set_keys: dict[str, str] = {}
    for key, value in (settings or {}).items():
        item = f"{key}={value!r}"
        _set_dotted(data, key, value, item)
        set_keys[key] = item
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=1e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        adapter = data.get("adapter")
        if (
            key == "adapter.adapter_type"
            and isinstance(adapter, dict)
            and adapter.get("adapter_type", "gara") != value
        ):
            data["adapter"] = {}  # another adapter type: the recipe's adapter keys do not apply
        _set_dotted(data, key, value, item)
        set_keys[key] = item
    return validate(data, source, set_keys, config_class)


MAX_BASE_DEPTH = 8  # recipes inheriting from recipes: deeper chains are a mistake, not a design


def read_recipe(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe's sections, merged over those of the recipe its `base:` key names (a path relative to
    the recipe's own folder), so a variant states only what it changes. Errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        named = f" (the base of {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}{named}: cannot read config ({err.strerror or err})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if loaded is None or loaded == {}:
        raise ConfigError(
            f"{path}: the config is empty; a recipe names at least its model and adapter "
            "(see configs/*.yaml), or leave out --config for the built-in ViT-B recipe"
        )
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections (model:, adapter:, ...) at the top level, "
            f"got a {type(loaded).__name__}"
        )
    base = loaded.pop("base", None)
    if base is None:
        return loaded
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base: must be the path of another recipe, got {base!r}")
    parent = (path.parent / base).resolve()
    if parent in chain or parent == path.resolve():
        raise ConfigError(
            f"{path}: base: {base} leads back to itself ({' -> '.join(map(str, (*chain, path)))})"
        )
    if len(chain) >= MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: more than {MAX_BASE_DEPTH} recipes chained by base:")
    return merge_sections(read_recipe(parent, (*chain, path.resolve())), loaded)


def merge_sections(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, section by section; an adapter section of another adapter type replaces the
    base's (its keys would not apply), as `adapter.adapter_type=...` does on the command line."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        other_adapter = (
            key == "adapter"
            and isinstance(value, dict)
            and isinstance(below, dict)
            and "adapter_type" in value
            and value["adapter_type"] != below.get("adapter_type", "gara")
        )
        if other_adapter:
            merged[key] = value
            continue
        merged[key] = (
            merge_sections(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
        )
    return merged


def validate(
    data: dict[str, Any],
    source: str = "config",
    overrides: dict[str, str] | None = None,
    config_class: type[TrainConfig] | None = None,
) -> TrainConfig:
    """Build a TrainConfig (or `config_class`) from plain data; errors name the dotted key and the
    override that set it."""
    try:
        return (config_class or TrainConfig).model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, source, overrides or {})) from None


def _describe(err: ValidationError, source: str, overrides: dict[str, str]) -> str:
    lines = []
    for error in err.errors():
        key = ".".join(str(part) for part in error["loc"])
        origin = next(
            (
                f"override {text!r}"
                for k, text in overrides.items()
                if key and (key == k or k.startswith(key + ".") or key.startswith(k + "."))
            ),
            source,
        )
        if error["type"] == "extra_forbidden":
            lines.append(f"{origin}: unknown key {key!r}{_valid_keys(error['loc'])}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        got = "" if isinstance(error["input"], dict | list) else f" (got {error['input']!r})"
        lines.append(f"{origin}: {key + ': ' if key else ''}{message}{got}")
    return "invalid training config:\n  " + "\n  ".join(lines)


def _valid_keys(loc: tuple[Any, ...]) -> str:
    model: Any = TrainConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    return f"; valid keys here: {', '.join(model.model_fields)}"


def _set_dotted(data: dict[str, Any], key: str, value: Any, item: str) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _pop_dotted(data: dict[str, Any], key: str) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.get(part, {})
    node.pop(last, None)


def dump_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML (written next to the run so it can be repeated exactly)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` lines for the leaves that differ (to explain a config-hash mismatch)."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            lines += config_diff(a, b, name + ".")
        elif a != b:
            lines.append(f"{name}: {a!r} -> {b!r}")
    return lines

"""Video training recipes: the image recipe's sections (model, adapter, loss, optimiser, schedule,
run, checkpoint, logging), with video data and prompts, read the same way (`load_config`: YAML,
flags, `key=value` overrides; a typo'd key is a `ConfigError` naming it).

A recipe is a video recipe when it says `task: video` (`garasam train` then trains on clips).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from garasam.train.config import DegradedData, LossSection, ModelSection, Section, TrainConfig


class VideoModelSection(ModelSection):
    model_type: str = "sam2.1_tiny"  # a SAM 2.1 type (only SAM 2.1 has a video mode); default the bundled one

    @field_validator("model_type")
    @classmethod
    def _sam2(cls, value: str) -> str:
        from garasam.models.registry import MODEL_TYPES, family_of

        if value not in MODEL_TYPES or family_of(value) != "sam2":
            sam2 = ", ".join(t for t in MODEL_TYPES if family_of(t) == "sam2")
            raise ValueError(f"video training needs SAM 2.1 (one of {sam2}), got {value!r}")
        return value


class VideoDataSection(DegradedData):
    """`train`: clip specs (frames, davis, youtube-vos, mose); degradations as for images."""

    frames: int = Field(8, ge=1)  # frames per training clip (SAM 2 trains on 8)
    max_objects: int = Field(3, ge=1)  # objects tracked per clip (RobustPVOS: up to 3)
    intensity_low: float | None = Field(None, ge=0, le=1)  # a smooth intensity curve per clip in [low, 1]


class VideoPromptSection(Section):
    # How each object is prompted on the clip's first frame, drawn uniformly per object.
    kinds: list[Literal["clicks", "box", "mask"]] = Field(
        default_factory=lambda: ["clicks", "box", "mask"], min_length=1
    )
    clicks: int = Field(3, ge=1, le=16)  # positive clicks of the "clicks" kind (RobustPVOS evaluates with 3)
    box_jitter: float = Field(0.1, ge=0, le=1)
    # Correction clicks on the first frame after the first prediction (SAM 2's interactive training):
    # each at the most interior pixel of the larger error region, positive on a miss, negative on
    # a false alarm; every prediction of the first frame is trained.
    corrections: int = Field(1, ge=0, le=8)


class VideoLossSection(LossSection):
    # SAM 2's class loss: a binary cross-entropy on the object score (is the object visible on this
    # frame?), which decides whether a mask is drawn at all while tracking
    object_weight: float = Field(1.0, ge=0)


class VideoTrainConfig(TrainConfig):
    """A complete video training run (`garasam.video.training.train_video(config)`)."""

    task: Literal["video"] = "video"
    model: VideoModelSection = Field(default_factory=VideoModelSection)
    data: VideoDataSection = Field(default_factory=VideoDataSection)
    prompts: VideoPromptSection = Field(default_factory=VideoPromptSection)
    loss: VideoLossSection = Field(default_factory=VideoLossSection)

    @model_validator(mode="after")
    def _no_image_validation(self) -> VideoTrainConfig:
        if self.validation.data is not None or self.validation.fraction:
            raise ValueError(
                "validation: video runs have no held-out validation yet; evaluate with garasam eval --video"
            )
        return self

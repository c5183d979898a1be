"""A tracking session's state: transformers' `Sam2VideoInferenceSession` (prompts, per-object
outputs, the memory bank, the feature cache) with frames read on demand from a `FrameSource`
instead of all held in memory, and the bookkeeping the official predictor keeps besides
(outputs of prompted frames not yet consolidated, the video's source and size, streaming).
"""

from __future__ import annotations

import torch
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

from garasam.video.frames import FrameSource, frame_to_input


class VideoState(Sam2VideoInferenceSession):
    """One video's tracking state (`VideoPredictor.init_state` makes it).

    Offline (`source` given): frame `i` is read and preprocessed when the model first needs it, and
    a few recent frames are kept. Streaming (no source): frames arrive one at a time through
    `VideoPredictor.track`, and only the outputs the memory can still reach are kept.
    """

    def __init__(
        self,
        source: FrameSource | None,
        image_size: int,
        *,
        device: torch.device,
        state_device: torch.device,
        frames_device: torch.device,
        frames_kept: int = 2,
    ) -> None:
        super().__init__(
            video=None,
            inference_device=device,
            inference_state_device=state_device,
            video_storage_device=frames_device,
            dtype=torch.float32,
        )
        self.source = source
        self.image_size = image_size
        self.frames_kept = frames_kept
        self.streaming = source is None
        self.frame_count = 0 if source is None else len(source)
        if source is not None:
            self.video_height, self.video_width = source.size
        # outputs of frames prompted since the last propagation, per object (the official "temp" dicts)
        self.temp_outputs: dict[int, dict[str, dict[int, dict]]] = {}
        # frame -> object id -> adapter layer -> mean active rank (VideoPredictor(record_gates=True))
        self.gate_log: dict[int, dict[int, dict[str, float]]] = {}

    @property
    def num_frames(self) -> int | None:
        """Frames in the video (offline); None while streaming (the length is unknown)."""
        return None if self.streaming else self.frame_count

    def get_frame(self, frame_idx: int) -> torch.Tensor:
        """The preprocessed frame, read from the source on first use."""
        if self.processed_frames is None or frame_idx not in self.processed_frames:
            pixels = frame_to_input(self.source.frame(frame_idx), self.image_size)
            self.add_new_frame(pixels, frame_idx)
            self._forget_frames(keep=frame_idx)
        return super().get_frame(frame_idx)

    def add_streamed_frame(self, pixels: torch.Tensor, size: tuple[int, int]) -> int:
        """Append a streamed frame; return its index."""
        if self.frame_count == 0:
            self.video_height, self.video_width = size
        frame_idx = self.frame_count
        self.add_new_frame(pixels, frame_idx)
        self.frame_count += 1
        self._forget_frames(keep=frame_idx)
        return frame_idx

    def obj_id_to_idx(self, obj_id: int) -> int:
        index = super().obj_id_to_idx(obj_id)
        self.temp_outputs.setdefault(index, {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}})
        return index

    def _forget_frames(self, keep: int) -> None:
        """Hold at most `frames_kept` preprocessed frames (the newest and the one just asked for)."""
        frames = self.processed_frames
        while len(frames) > self.frames_kept:
            frames.pop(max((i for i in frames if i != keep), key=lambda i: abs(i - keep)))

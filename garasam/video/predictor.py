"""`VideoPredictor`: SAM 2.1's video tracker with the official `SAM2VideoPredictor`'s names and
behaviour, on transformers' `Sam2VideoModel` (which may carry adapters), offline or streaming.

Offline: `init_state(video)` on a video file, a folder of frames or frames in memory; prompts on any
frame (`add_new_points_or_box`, `add_new_mask`), each answered at once with the masks of every
object on that frame; `propagate_in_video` then tracks forwards (or with `reverse`, backwards).
Frames are read when first needed and only a couple are held (the official predictor holds them
all). Streaming (`init_state()` without a video): `track(state, frame)` takes one camera frame and
returns the masks of every tracked object; prompts go on the newest frame; the memory keeps only
what the model can still attend to (the prompted frames, the last `num_maskmem` frames' memories,
the last object pointers), so it stays bounded however long the stream runs.

The official predictor's order of work is kept, since it decides the numbers: a prompt runs the
decoder without writing memory, and the memory of prompted frames is written when propagation
starts, from the low-resolution masks scaled back up (`_consolidate`); a correction click on an
already tracked frame feeds that frame's previous logits to the decoder; the memory of a prompted
frame holds its binarised mask, of a tracked frame the sigmoid of its logits.

Not done here (unlike the official predictor): filling small holes in the masks (`fill_hole_area`,
CUDA-only in the official code, so a no-op on CPUs there too) and clearing the memory around
correction clicks (`clear_non_cond_mem_around_input`, off by default there).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from garasam.assembly.encoding import read_gates
from garasam.errors import ConfigError, DataError
from garasam.fast.cuda_graphs import Capture, FrameGraphs
from garasam.models.checkpoint import is_video_model
from garasam.video.frames import FrameSource, frame_to_input, open_frames
from garasam.video.state import VideoState

NO_OBJECT_SCORE = -1024.0  # the logit written where an object has no output (the official NO_OBJ_SCORE)
MaskOutput = tuple[int, list[int], torch.Tensor]  # frame index, object ids, logits [objects, 1, H, W]


class VideoPredictor:
    """Track objects through a video with a SAM 2.1 video model (`build_sam(..., video=True)`).

    `non_overlap_masks`: at each pixel only the highest-scoring object keeps a positive logit in the
    returned masks (the memory is unaffected), as the official option of that name.
    `add_all_frames_to_correct_as_cond`: a correction click on a tracked frame makes it a
    conditioning frame (always attended to), as the official option.
    `record_gates`: keep, per frame and object, each gated adapter's mean active rank when the
    frame was tracked (`state.gate_log[frame][obj_id][layer]`): the encoder's gates decide per
    frame (and window), the memory attention's per frame and object.
    `dtype`: run the model under autocast to this dtype (`torch.bfloat16`: SAM 2.1's own fast path,
    as the official predictor runs on GPUs); outputs and memories are kept in float32, so only the
    model's arithmetic changes (tests/video/test_predictor.py measures the difference on a CPU).
    `cuda_graphs`: replay the per-frame image encoder as a CUDA graph on a GPU
    (`garasam.fast.cuda_graphs.FrameGraphs`, installed on the model); a callable stands in for the
    capture (tests check the bookkeeping on a CPU with one).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        non_overlap_masks: bool = False,
        add_all_frames_to_correct_as_cond: bool = False,
        record_gates: bool = False,
        dtype: torch.dtype | None = None,
        cuda_graphs: bool | Capture = False,
    ) -> None:
        if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
            raise ConfigError(
                f"VideoPredictor: dtype must be a floating-point torch dtype or None, got {dtype!r}"
            )
        if not is_video_model(model):
            raise ConfigError(
                f"VideoPredictor needs SAM 2.1 in video mode (build_sam(model_type, checkpoint, video=True)), "
                f"got {type(model).__name__}"
            )
        self.model = model.eval()
        self.image_size = int(model.config.image_size)
        self.non_overlap_masks = non_overlap_masks
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond
        self.record_gates = record_gates
        self.dtype = dtype
        installed = model.get_image_features
        self.frame_graphs = installed if isinstance(installed, FrameGraphs) else None
        if cuda_graphs and self.frame_graphs is None:  # one set of graphs per model
            self.frame_graphs = FrameGraphs(model, capture=None if cuda_graphs is True else cuda_graphs)
            model.get_image_features = self.frame_graphs

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # sessions

    def init_state(
        self,
        video: str | os.PathLike | Sequence[np.ndarray] | np.ndarray | FrameSource | None = None,
        *,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
    ) -> VideoState:
        """A tracking state for `video` (a file, a folder of frames or frames in memory), or for a
        stream when `video` is None. The offload options keep frames / tracking outputs in CPU
        memory when the model runs on a GPU, as the official options."""
        cpu = torch.device("cpu")
        source = None if video is None else open_frames(video)
        return VideoState(
            source,
            self.image_size,
            device=self.device,
            state_device=cpu if offload_state_to_cpu else self.device,
            frames_device=cpu if offload_video_to_cpu else self.device,
        )

    def reset_state(self, state: VideoState) -> None:
        """Forget every object, prompt and output (the frames stay); a stream goes on from here."""
        state.reset_inference_session()
        state.temp_outputs.clear()
        state.gate_log.clear()

    # prompts

    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        state: VideoState,
        frame_idx: int,
        obj_id: int,
        points: Sequence[Sequence[float]] | np.ndarray | torch.Tensor | None = None,
        labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    ) -> MaskOutput:
        """Clicks (label 1 foreground, 0 background) and/or a box (x0, y0, x1, y1) for object
        `obj_id` on frame `frame_idx`, in the video's pixels (`normalize_coords=False`: already in
        the model's square). Returns the frame's masks of every object (logits, video size)."""
        self._check_frame_idx(state, frame_idx)
        if (points is None) != (labels is None):
            raise ValueError("points and labels must be given together")
        if points is None and box is None:
            raise ValueError("give points (with labels) or a box")
        coords = (
            torch.zeros(0, 2) if points is None else torch.as_tensor(np.asarray(points, dtype=np.float32))
        )
        kinds = torch.zeros(0, dtype=torch.int32) if labels is None else torch.as_tensor(np.asarray(labels))
        if coords.ndim != 2 or coords.shape[1] != 2 or kinds.ndim != 1 or len(kinds) != len(coords):
            raise ValueError(
                f"points must be [N, 2] with N labels, got points {list(coords.shape)} and labels {list(kinds.shape)}"
            )
        if not torch.isfinite(coords).all():
            raise ValueError("points must be finite numbers")
        if len(kinds) and not set(kinds.tolist()) <= {0, 1}:
            raise ValueError(
                f"point labels must be 0 (background) or 1 (foreground), got {sorted(set(kinds.tolist()))}"
            )
        kinds = kinds.to(torch.int32)
        if box is not None:
            if not clear_old_points:
                raise ValueError("a box must come first: add it with clear_old_points=True, then points")
            corners = torch.as_tensor(np.asarray(box, dtype=np.float32)).reshape(-1)
            if corners.numel() != 4 or not torch.isfinite(corners).all():
                raise ValueError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {corners.tolist()}")
            coords = torch.cat([corners.reshape(2, 2), coords])
            kinds = torch.cat([torch.tensor([2, 3], dtype=torch.int32), kinds])
        if normalize_coords:
            coords = coords / torch.tensor([state.video_width, state.video_height], dtype=torch.float32)
        coords = (coords * self.image_size)[None, None].to(self.device)
        kinds = kinds[None, None].to(self.device)
        obj_idx = self._object_index(state, obj_id)
        previous = None if clear_old_points else state.point_inputs_per_obj[obj_idx].get(frame_idx)
        if previous is not None:
            coords = torch.cat([previous["point_coords"], coords], dim=2)
            kinds = torch.cat([previous["point_labels"], kinds], dim=2)
        state.point_inputs_per_obj[obj_idx][frame_idx] = {"point_coords": coords, "point_labels": kinds}
        state.mask_inputs_per_obj[obj_idx].pop(frame_idx, None)
        return self._prompt(state, obj_idx, frame_idx, points=state.point_inputs_per_obj[obj_idx][frame_idx])

    @torch.inference_mode()
    def add_new_mask(
        self, state: VideoState, frame_idx: int, obj_id: int, mask: np.ndarray | torch.Tensor
    ) -> MaskOutput:
        """A mask (H x W, boolean; any size, scaled to the model's square) for object `obj_id` on
        frame `frame_idx`. Returns the frame's masks of every object."""
        self._check_frame_idx(state, frame_idx)
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
        if mask.ndim != 2:
            raise ValueError(f"mask must be H x W, got shape {list(mask.shape)}")
        pixels = mask.to(torch.float32)[None, None].to(self.device)
        if tuple(mask.shape) != (self.image_size, self.image_size):
            pixels = F.interpolate(
                pixels,
                (self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
            pixels = (pixels >= 0.5).float()
        obj_idx = self._object_index(state, obj_id)
        state.mask_inputs_per_obj[obj_idx][frame_idx] = pixels
        state.point_inputs_per_obj[obj_idx].pop(frame_idx, None)
        return self._prompt(state, obj_idx, frame_idx, mask=pixels)

    def remove_object(self, state: VideoState, obj_id: int, strict: bool = False) -> tuple[list[int], list]:
        """Stop tracking `obj_id`: (remaining object ids, [(frame, masks)] of the prompted frames)."""
        if obj_id not in state.obj_ids:
            if strict:
                raise ValueError(f"object id {obj_id} is not tracked (tracked: {state.obj_ids})")
            return list(state.obj_ids), []
        if len(state.obj_ids) == 1:
            self.reset_state(state)
            return [], []
        removed = state.obj_id_to_idx(obj_id)
        keep = [i for i in range(len(state.obj_ids)) if i != removed]
        tables = (
            "point_inputs_per_obj",
            "mask_inputs_per_obj",
            "output_dict_per_obj",
            "frames_tracked_per_obj",
        )
        for name in (*tables, "temp_outputs"):
            table = getattr(state, name)
            kept = [table[i] for i in keep]
            table.clear()
            table.update(enumerate(kept))
        ids = [i for i in state.obj_ids if i != obj_id]
        state._obj_id_to_idx.clear()
        state._obj_idx_to_id.clear()
        for index, kept_id in enumerate(ids):
            state._obj_id_to_idx[kept_id] = index
            state._obj_idx_to_id[index] = kept_id
        state.obj_ids = ids
        prompted = sorted(
            {f for i in range(len(ids)) for f in state.point_inputs_per_obj[i]}
            | {f for i in range(len(ids)) for f in state.mask_inputs_per_obj[i]}
        )
        return ids, [(f, self._consolidated(state, f, cond=True)) for f in prompted]

    # tracking

    @torch.inference_mode()
    def propagate_in_video(
        self,
        state: VideoState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[MaskOutput]:
        """Track every object from `start_frame_idx` (default: the first prompted frame), forwards
        or backwards, yielding (frame, object ids, masks) per frame."""
        if state.streaming:
            raise ValueError(
                "propagate_in_video works on a whole video; a stream is tracked frame by frame with track()"
            )
        self._start_tracking(state)
        if start_frame_idx is None:
            start_frame_idx = min(
                f for out in state.output_dict_per_obj.values() for f in out["cond_frame_outputs"]
            )
        self._check_frame_idx(state, start_frame_idx)
        span = state.frame_count if max_frame_num_to_track is None else max_frame_num_to_track
        if reverse:
            order = (
                range(start_frame_idx, max(start_frame_idx - span, 0) - 1, -1) if start_frame_idx > 0 else []
            )
        else:
            order = range(start_frame_idx, min(start_frame_idx + span, state.frame_count - 1) + 1)
        for frame_idx in order:
            yield frame_idx, list(state.obj_ids), self._track_frame(state, frame_idx, reverse)

    def add_frame(self, state: VideoState, frame: np.ndarray) -> int:
        """Streaming: add `frame` (H x W x 3 uint8, every frame one size) without tracking, e.g. the
        first frame, to prompt on it; returns its index."""
        if not state.streaming:
            raise ValueError("add_frame is for streams (init_state() without a video)")
        if not isinstance(frame, np.ndarray) or frame.ndim != 3:
            raise DataError(f"frame {state.frame_count}: expected an H x W x 3 uint8 RGB image")
        if state.frame_count and tuple(frame.shape[:2]) != (state.video_height, state.video_width):
            raise DataError(
                f"frame {state.frame_count} is {frame.shape[1]}x{frame.shape[0]}, the stream's frames "
                f"{state.video_width}x{state.video_height}"
            )
        return state.add_streamed_frame(frame_to_input(frame, self.image_size), frame.shape[:2])

    @torch.inference_mode()
    def track(self, state: VideoState, frame: np.ndarray | None = None) -> MaskOutput:
        """Streaming: add `frame` and return the masks of every tracked object on it; with no frame,
        track the newest one (after prompting on it)."""
        if not state.streaming:
            raise ValueError("track() is for streams (init_state() without a video); use propagate_in_video")
        if not state.obj_ids:
            raise ValueError(
                "no objects to track (none prompted yet, or reset_state forgot them): add the frame with "
                "add_frame, prompt on it (add_new_points_or_box / add_new_mask), then track"
            )
        if frame is not None:
            self.add_frame(state, frame)
        if state.frame_count == 0:
            raise ValueError("no frame yet: give track() the stream's first frame")
        frame_idx = state.frame_count - 1
        self._start_tracking(state)
        masks = self._track_frame(state, frame_idx, reverse=False)
        self._forget_old_outputs(state, frame_idx)
        return frame_idx, list(state.obj_ids), masks

    # internals

    def _check_frame_idx(self, state: VideoState, frame_idx: int) -> None:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, int | np.integer):
            raise ValueError(f"frame index must be an integer, got {frame_idx!r}")
        if state.streaming:
            if frame_idx != state.frame_count - 1:
                newest = (
                    "no frame yet" if state.frame_count == 0 else f"the newest is {state.frame_count - 1}"
                )
                raise ValueError(
                    f"frame {frame_idx}: a stream takes prompts on its newest frame only ({newest})"
                )
        elif not 0 <= frame_idx < state.frame_count:
            raise ValueError(
                f"frame {frame_idx} is past the end of {state.source.name} ({state.frame_count} frames)"
            )

    def _object_index(self, state: VideoState, obj_id: int) -> int:
        if isinstance(obj_id, bool) or not isinstance(obj_id, int | np.integer):
            raise ValueError(f"object id must be an integer, got {obj_id!r}")
        if obj_id not in state.obj_ids and any(state.frames_tracked_per_obj.values()):
            raise ValueError(
                f"object id {obj_id} is new, but tracking has started for {state.obj_ids}: add every object "
                "before tracking, or reset_state and prompt them all again"
            )
        return state.obj_id_to_idx(int(obj_id))

    def _prompt(
        self,
        state: VideoState,
        obj_idx: int,
        frame_idx: int,
        points: dict | None = None,
        mask: torch.Tensor | None = None,
    ) -> MaskOutput:
        """Run the decoder for one object's new prompt on a frame (no memory written yet) and return
        the frame's masks of every object (the official `add_new_*` flow)."""
        tracked = state.frames_tracked_per_obj[obj_idx]
        initial = frame_idx not in tracked
        reverse = False if initial else tracked[frame_idx]["reverse"]
        cond = initial or self.add_all_frames_to_correct_as_cond
        key = "cond_frame_outputs" if cond else "non_cond_frame_outputs"
        previous_logits = None
        if points is not None:
            previous = self._newest_output(state, obj_idx, frame_idx, key)
            if previous is not None and previous["pred_masks"] is not None:
                previous_logits = torch.clamp(previous["pred_masks"].to(self.device), -32.0, 32.0)
        out = self._decode(
            state, obj_idx, frame_idx, initial, points, mask, reverse, previous_logits, memory=False
        )
        state.temp_outputs[obj_idx][key][frame_idx] = out
        return frame_idx, list(state.obj_ids), self._consolidated(state, frame_idx, cond)

    def _decode(
        self,
        state: VideoState,
        obj_idx: int,
        frame_idx: int,
        initial: bool,
        points: dict | None,
        mask: torch.Tensor | None,
        reverse: bool,
        previous_logits: torch.Tensor | None = None,
        memory: bool = True,
    ) -> dict:
        """One object on one frame: the decoder on memory-conditioned features, and (`memory`) the
        frame's memory for later frames."""
        with self._autocast():
            out = self.model._run_single_frame_inference(
                inference_session=state,
                frame_idx=frame_idx,
                obj_idx=obj_idx,
                batch_size=1,
                is_init_cond_frame=initial,
                point_inputs=points,
                mask_inputs=mask,
                reverse=reverse,
                prev_sam_mask_logits=previous_logits,
                streaming=state.streaming,
            )
        result = {
            "pred_masks": out["pred_masks"].float().to(state.inference_state_device),
            # [objects, width] as the official code keeps it (transformers' extra axis is only folded
            # away when the memory is narrower than the model, which the mini's is not)
            "object_pointer": out["object_pointer"].float().reshape(-1, out["object_pointer"].shape[-1]),
            "object_score_logits": out["object_score_logits"].float(),
            "maskmem_features": None,
            "maskmem_pos_enc": None,
        }
        if memory:
            self._write_memory(
                state, frame_idx, result, out["high_res_masks"].float(), binarize=points is not None
            )
        return result

    def _write_memory(
        self, state: VideoState, frame_idx: int, out: dict, high_res_masks: torch.Tensor, binarize: bool
    ) -> None:
        """The memory encoder on the frame's features and mask (binarised for prompted frames)."""
        with self._autocast():
            features, _ = self.model._prepare_vision_features(state, frame_idx, batch_size=1)
            memory, position = self.model._encode_new_memory(
                current_vision_feats=features[-1],
                pred_masks_high_res=high_res_masks,
                object_score_logits=out["object_score_logits"],
                is_mask_from_pts=binarize,
            )
        out["maskmem_features"] = memory.float().to(state.inference_state_device)
        out["maskmem_pos_enc"] = position.float().to(state.inference_state_device)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        )

    def _start_tracking(self, state: VideoState) -> None:
        """Write the memory of newly prompted frames and move them into the tracking outputs (the
        official `propagate_in_video_preflight`)."""
        if not state.obj_ids:
            raise ValueError("no objects to track: prompt one first (add_new_points_or_box or add_new_mask)")
        for obj_idx in range(len(state.obj_ids)):
            outputs, temp = state.output_dict_per_obj[obj_idx], state.temp_outputs[obj_idx]
            for key in ("non_cond_frame_outputs", "cond_frame_outputs"):
                for frame_idx, out in temp[key].items():
                    if out["maskmem_features"] is None:
                        high_res = F.interpolate(
                            out["pred_masks"].to(self.device),
                            (self.image_size, self.image_size),
                            mode="bilinear",
                            align_corners=False,
                        )
                        self._write_memory(state, frame_idx, out, high_res, binarize=True)
                    outputs[key][frame_idx] = out
                temp[key].clear()
            if not outputs["cond_frame_outputs"]:
                raise ValueError(
                    f"object id {state.obj_idx_to_id(obj_idx)} has no prompt: add points, a box or a mask for it"
                )
            for frame_idx in outputs["cond_frame_outputs"]:
                outputs["non_cond_frame_outputs"].pop(frame_idx, None)

    def _track_frame(self, state: VideoState, frame_idx: int, reverse: bool) -> torch.Tensor:
        """Every object on one frame: prompted frames' outputs as they are, others tracked."""
        masks = []
        for obj_idx in range(len(state.obj_ids)):
            outputs = state.output_dict_per_obj[obj_idx]
            out = outputs["cond_frame_outputs"].get(frame_idx)
            if out is None:
                out = self._decode(state, obj_idx, frame_idx, False, None, None, reverse)
                outputs["non_cond_frame_outputs"][frame_idx] = out
                ranks = (
                    {g.name: float(g.mean_active_rank[0]) for g in read_gates(self.model).summary()}
                    if self.record_gates
                    else {}
                )
                if ranks:  # a model without gated adapters has nothing to record
                    state.gate_log.setdefault(frame_idx, {})[state.obj_idx_to_id(obj_idx)] = ranks
            state.frames_tracked_per_obj[obj_idx][frame_idx] = {"reverse": reverse}
            masks.append(out["pred_masks"].to(self.device))
        return self._to_video_size(state, torch.cat(masks))

    def _consolidated(self, state: VideoState, frame_idx: int, cond: bool) -> torch.Tensor:
        """The frame's masks of every object, the newest output of each (objects without one on this
        frame get `NO_OBJECT_SCORE`)."""
        key = "cond_frame_outputs" if cond else "non_cond_frame_outputs"
        size = (state.video_height, state.video_width)
        masks = torch.full((len(state.obj_ids), 1, *size), NO_OBJECT_SCORE, device=self.device)
        for obj_idx in range(len(state.obj_ids)):
            out = self._newest_output(state, obj_idx, frame_idx, key)
            if out is not None:
                logits = out["pred_masks"].to(self.device)
                masks[obj_idx : obj_idx + 1] = F.interpolate(
                    logits, size, mode="bilinear", align_corners=False
                )
        return self._overlap(masks)

    @staticmethod
    def _newest_output(state: VideoState, obj_idx: int, frame_idx: int, key: str) -> dict | None:
        """An object's newest output on a frame: a prompt's not yet consolidated, else a tracked one."""
        outputs = state.output_dict_per_obj[obj_idx]
        for table in (
            state.temp_outputs[obj_idx][key],
            outputs["cond_frame_outputs"],
            outputs["non_cond_frame_outputs"],
        ):
            if frame_idx in table:
                return table[frame_idx]
        return None

    def _to_video_size(self, state: VideoState, logits: torch.Tensor) -> torch.Tensor:
        size = (state.video_height, state.video_width)
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size, mode="bilinear", align_corners=False)
        return self._overlap(logits)

    def _overlap(self, logits: torch.Tensor) -> torch.Tensor:
        """With `non_overlap_masks`, only the best object at each pixel stays positive."""
        if not self.non_overlap_masks or logits.shape[0] == 1:
            return logits
        best = logits.argmax(dim=0, keepdim=True)
        keep = best == torch.arange(logits.shape[0], device=logits.device)[:, None, None, None]
        return torch.where(keep, logits, torch.clamp(logits, max=-10.0))

    def _forget_old_outputs(self, state: VideoState, frame_idx: int) -> None:
        """Streaming: drop tracked outputs the memory can no longer reach (older than the memory
        frames and the object pointers look back), so memory stays bounded."""
        # the next frame reads the outputs of up to `reach - 1` frames before it
        reach = max(self.model.num_maskmem, self.model.config.max_object_pointers_in_encoder)
        oldest = frame_idx + 2 - reach
        for obj_idx in range(len(state.obj_ids)):
            old = [f for f in state.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"] if f < oldest]
            for f in old:
                state.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"].pop(f)
                state.frames_tracked_per_obj[obj_idx].pop(f, None)
        for f in [f for f in state.gate_log if f < oldest]:
            state.gate_log.pop(f)

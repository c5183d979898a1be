"""Video: SAM 2.1's video mode with adapters, degraded clips and their evaluation (issue 31).

- `garasam.video.predictor`: `VideoPredictor`, the tracker (the official `SAM2VideoPredictor`'s
  names and numbers; offline on a file, folder or frames in memory, or streaming frame by frame).
- `garasam.video.state`: a tracking session's state; `garasam.video.frames`: where frames come
  from (folders, video files through PyAV, arrays) and SAM 2's frame preprocessing.
- `garasam.video.metrics`: the DAVIS measures J (region) and F (boundary), per-sequence statistics.
- `garasam.video.clips`: clips with masks from DAVIS and frames + masks folders, read lazily.
- `garasam.video.evaluate` / `report`: `garasam eval --video` (J, F, J&F per protocol and
  condition, gate records per frame); `training` / `train_config`: video recipes for `garasam train`.
- `garasam.video.web`: the web page's video tab; `pretrain_tiny`: the bundled `sam2.1_tiny`'s
  pretraining.
- `garasam.video.study_plan` / `study` / `study_analysis`: the robust-video miniature
  (`garasam study --video`, docs/video-miniature.md).
"""

from garasam.lazy import lazy_exports

_EXPORTS = {"VideoPredictor": "garasam.video.predictor", "VideoState": "garasam.video.state"}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

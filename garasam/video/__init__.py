"""Video: SAM 2.1's video mode with adapters, degraded clips and their evaluation (issue 31).

- `garasam.video.predictor`: `VideoPredictor`, the tracker (the official `SAM2VideoPredictor`'s
  names and numbers; offline on a file, folder or frames in memory, or streaming frame by frame).
- `garasam.video.state`: a tracking session's state; `garasam.video.frames`: where frames come
  from (folders, video files through PyAV, arrays) and SAM 2's frame preprocessing.
- `garasam.video.metrics`: the DAVIS measures J (region) and F (boundary), per-sequence statistics.
- `garasam.video.clips`: clips with masks from DAVIS and frames + masks folders, read lazily.
"""

from garasam.lazy import lazy_exports

_EXPORTS = {"VideoPredictor": "garasam.video.predictor", "VideoState": "garasam.video.state"}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

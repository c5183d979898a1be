"""Video: SAM 2.1's video mode with adapters, degraded clips and their evaluation (issue 31).

Built so far: the DAVIS measures J (region) and F (boundary) with their per-sequence statistics
(`garasam.video.metrics`), and clips read lazily from DAVIS and frames + masks folders
(`garasam.video.clips`).
"""

"""Video: SAM 2.1's video mode with adapters, degraded clips and their evaluation (issue 31).

Built so far: the DAVIS measures J (region) and F (boundary), `garasam.video.metrics`.
"""

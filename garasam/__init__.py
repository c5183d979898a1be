"""GaRA-SAM: gated-rank adaptation for a robust Segment Anything Model."""

__version__ = "0.1.0"

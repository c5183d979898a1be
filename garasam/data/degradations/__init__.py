"""Degradation suites: robustseg (RobustSAM's 15, torch) and imagenet-c (19 x 5 severities), plus clean.

d = get_degradation("robustseg", "fog")
out, masks = d(images_uint8, [seed_for(image_id, d.name) for image_id in ids], masks=masks)
"""

from __future__ import annotations

import hashlib

import torch

from garasam.data.degradations import imagenet_c, robustseg
from garasam.data.degradations.core import Degradation, Masks
from garasam.errors import DataError

__all__ = [
    "CLEAN",
    "SUITES",
    "Degradation",
    "folder_name",
    "get_degradation",
    "get_suite",
    "list_degradations",
    "seed_for",
]

SUITES: tuple[str, ...] = ("robustseg", "imagenet-c")


def _identity(
    images: torch.Tensor, seeds: list[int], severity: int, masks: Masks | None
) -> tuple[torch.Tensor, Masks | None]:
    return images.clone(), masks


CLEAN = Degradation(
    name="clean",
    suite="clean",
    severities=(0,),
    geometric=False,
    stochastic=False,
    default_severity=0,
    apply=_identity,
)

_SUITES: dict[str, tuple[Degradation, ...]] = {"robustseg": robustseg.SUITE, "imagenet-c": imagenet_c.SUITE}


def get_suite(suite: str) -> list[Degradation]:
    """The degradations of `suite` in the reference table's order, without clean."""
    if suite not in _SUITES:
        raise DataError(f"unknown degradation suite {suite!r}; valid suites: {', '.join(SUITES)}")
    return list(_SUITES[suite])


def get_degradation(suite: str, name: str) -> Degradation:
    """One degradation by suite and name; "clean" (the identity) exists in every suite."""
    members = get_suite(suite)
    if name == CLEAN.name:
        return CLEAN
    for degradation in members:
        if degradation.name == name:
            return degradation
    valid = ", ".join([CLEAN.name] + [d.name for d in members])
    raise DataError(f"unknown degradation {name!r} in suite {suite!r}; valid names: {valid}")


def list_degradations() -> list[Degradation]:
    """Everything, clean first, for `garasam corrupt --list`."""
    return [CLEAN] + [d for suite in SUITES for d in _SUITES[suite]]


def seed_for(image_id: str, degradation: str, severity: int = 1, base_seed: int = 0) -> int:
    """The seed of one (image, degradation, severity), in [0, 2**32): the same in every process and run.

    Built from SHA-256 rather than `hash()`, which Python salts per process. 32 bits fit every RNG the
    suites feed (torch, NumPy's legacy global state, numba).
    """
    key = f"{base_seed}\x00{degradation}\x00{severity}\x00{image_id}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big")


def folder_name(d: Degradation, severity: int) -> str:
    """The on-disk folder of `d` at `severity`: robustseg and clean use the name, imagenet-c adds `_s{severity}`."""
    if severity not in d.severities:
        raise DataError(
            f"degradation {d.suite}/{d.name}: severity {severity!r} is not one of {list(d.severities)}"
        )
    if d.suite == "imagenet-c":
        return f"{d.name}_s{severity}"
    return d.name

"""Per-image random source for the torch degradations."""

from __future__ import annotations

import torch

# Offsets the dense stream's seed so that, on CPU, the two generators of one image are not the same stream.
_DENSE_SEED_OFFSET = 0x5DEECE66D


class ImageRng:
    """Random draws for one image, reproducible from its seed alone.

    Scalar parameters (factors, kernel sizes, counts) come from a CPU generator, so they are the same on
    every device; dense noise comes from a generator on the image's device, so it is drawn where it is
    used. CPU and CUDA generators are different algorithms: dense noise is reproducible per device type.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self.device = device
        self._scalar = torch.Generator().manual_seed(seed)
        self._dense = torch.Generator(device=device).manual_seed((seed + _DENSE_SEED_OFFSET) % 2**63)

    def uniform(self, low: float, high: float) -> float:
        """A float in [low, high)."""
        return low + (high - low) * float(torch.rand((), generator=self._scalar))

    def randint(self, low: int, high: int) -> int:
        """An int in [low, high], both ends included (as `random.randint`)."""
        return int(torch.randint(low, high + 1, (), generator=self._scalar))

    def randints(self, low: int, high: int, count: int) -> torch.Tensor:
        """`count` ints in [low, high] on the CPU (small sets: positions, choices)."""
        return torch.randint(low, high + 1, (count,), generator=self._scalar)

    def permutation(self, n: int) -> list[int]:
        """A random order of range(n)."""
        return torch.randperm(n, generator=self._scalar).tolist()

    def rand(self, *shape: int) -> torch.Tensor:
        """Dense U[0, 1) noise on the image's device."""
        return torch.rand(shape, generator=self._dense, device=self.device)

    def randn(self, *shape: int) -> torch.Tensor:
        """Dense N(0, 1) noise on the image's device."""
        return torch.randn(shape, generator=self._dense, device=self.device)

    def dense_randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Dense ints in [low, high] (both included) on the image's device."""
        return torch.randint(low, high + 1, shape, generator=self._dense, device=self.device)

    def poisson(self, rates: torch.Tensor) -> torch.Tensor:
        """Poisson counts with the given rates, on the rates' device."""
        return torch.poisson(rates, generator=self._dense)

"""Write the web page's bundled sample images (garasam/assets/samples/) from scikit-image's data.

scikit-image ships these photographs inside its wheel (public domain or CC0, see skimage.data), so
the page has something to segment without any download. Run from the repository root:

    .venv/bin/python scripts/make_samples.py
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from garasam.io import atomic_write_bytes

OUT = Path(__file__).resolve().parent.parent / "garasam" / "assets" / "samples"
MAX_SIDE = 512
QUALITY = 85
SAMPLES = {"astronaut.jpg": data.astronaut, "coffee.jpg": data.coffee}


def jpeg(image: np.ndarray) -> bytes:
    """Shrink to at most MAX_SIDE px (antialiased) and encode as a baseline JPEG."""
    picture = Image.fromarray(image)
    picture.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=QUALITY, optimize=True)
    return buffer.getvalue()


def main() -> None:
    for name, load in SAMPLES.items():
        encoded = jpeg(load())
        atomic_write_bytes(OUT / name, encoded)
        print(f"{OUT / name}: {len(encoded) / 1024:.0f} KB")


if __name__ == "__main__":
    main()

"""Request payloads: images as the two signatures take them (pixels or encoded files)."""

from __future__ import annotations

import io
import pathlib
from collections.abc import Sequence

import numpy as np

from workloads.core.errors import DataError

IMAGE_SHAPE = (28, 28)


def synthetic_images(count: int, seed: int = 0) -> np.ndarray:
    """Deterministic ``[count, 28, 28]`` uint8 images with some structure, for load and smoke tests."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, *IMAGE_SHAPE), dtype=np.uint8)
    images[:, 10:18, :] //= 4  # a dark band, so images differ in more than noise
    return images


def encode_image(pixels: np.ndarray, image_format: str = "PNG", mode: str = "L") -> bytes:
    """A PNG or JPEG of a ``[28, 28]`` 0-255 image; ``mode="RGB"`` makes a colour copy."""
    from PIL import Image

    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def read_image_files(paths: Sequence[str]) -> tuple[list[bytes], np.ndarray]:
    """Encoded bytes and ``[N, 28, 28]`` grey pixels of PNG/JPEG files (any size, grey or colour)."""
    from PIL import Image, UnidentifiedImageError

    encoded, pixels = [], []
    for path in paths:
        try:
            data = pathlib.Path(path).read_bytes()
            with Image.open(io.BytesIO(data)) as image:
                grey = image.convert("L").resize(IMAGE_SHAPE[::-1])
                pixels.append(np.asarray(grey, dtype=np.uint8))
        except OSError as error:
            if isinstance(error, UnidentifiedImageError):
                raise DataError(path, "is not a PNG or JPEG image") from error
            raise DataError(path, f"cannot be read: {error.strerror or error}") from error
        encoded.append(data)
    return encoded, np.stack(pixels) if pixels else np.zeros((0, *IMAGE_SHAPE), dtype=np.uint8)

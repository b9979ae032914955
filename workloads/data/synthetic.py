"""Deterministic synthetic Fashion-MNIST: 28x28 uint8 images of the same ten classes, made on the spot.

Nothing may be downloaded at run time, so the demo and the tests use this when no dataset is given.
The data has real class structure a model must learn: every class is a garment silhouette (torso and
sleeves, two trouser legs, a boot ...) drawn from signed-distance shapes, and every image varies it
with a random affine transform (scale, aspect, rotation, shift), per-class proportions (sleeve
length, width), brightness, stripes and noise. Classes that share parts (T-shirt / shirt / pullover /
coat; sandal / sneaker / boot) are confusable the way the real ones are; no single pixel separates
them. The same ``(count, seed, split)`` always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SIZE = 28
_SPLITS = {"train": 0, "test": 1}
_CHUNK = 4096
_SHAPE_PARAMS = 3  # per-sample uniforms each class may use for its proportions

Array = np.ndarray


def _box(
    u: Array, v: Array, cx: float | Array, cy: float | Array, hw: float | Array, hh: float | Array
) -> Array:
    return np.maximum(np.abs(u - cx) - hw, np.abs(v - cy) - hh)


def _rotated_box(
    u: Array, v: Array, cx: float, cy: float, hw: float | Array, hh: float | Array, angle: float
) -> Array:
    cos, sin = np.cos(angle), np.sin(angle)
    du, dv = u - cx, v - cy
    return _box(cos * du + sin * dv, -sin * du + cos * dv, 0.0, 0.0, hw, hh)


def _ellipse(u: Array, v: Array, cx: float, cy: float, a: float | Array, b: float | Array) -> Array:
    return (np.sqrt(((u - cx) / a) ** 2 + ((v - cy) / b) ** 2) - 1.0) * np.minimum(a, b)


def _union(*distances: Array) -> Array:
    return np.minimum.reduce(distances)


def _cut(shape: Array, hole: Array) -> Array:
    return np.maximum(shape, -hole)


def _fill(distance: Array) -> Array:
    """Signed distance (pixels, negative inside) to coverage with a one-pixel anti-aliased edge."""
    return np.clip(0.5 - distance, 0.0, 1.0)


def _line(distance: Array, width: float = 0.6) -> Array:
    """A thin dark line along the zero set of ``distance``."""
    return np.clip(width + 0.5 - np.abs(distance), 0.0, 1.0)


def _tshirt(u: Array, v: Array, p: Array) -> Array:
    torso = _box(u, v, 0, 1.5, 6.5 + 1.5 * p[0], 10.5)
    sleeve = 3.0 + 1.5 * p[1]
    sleeves = _union(
        _rotated_box(u, v, -8.5, -6.0, sleeve, 2.6, 0.55), _rotated_box(u, v, 8.5, -6.0, sleeve, 2.6, -0.55)
    )
    return _fill(_cut(_union(torso, sleeves), _ellipse(u, v, 0, -9.5, 3.0, 2.2)))


def _trouser(u: Array, v: Array, p: Array) -> Array:
    leg = 2.4 + 0.8 * p[0]
    legs = _union(
        _rotated_box(u, v, -3.4, 1.5, leg, 11.5, -0.06 - 0.05 * p[1]),
        _rotated_box(u, v, 3.4, 1.5, leg, 11.5, 0.06 + 0.05 * p[1]),
    )
    waist = _box(u, v, 0, -10.5, 5.8 + 0.8 * p[0], 1.6)
    return _fill(_union(legs, waist))


def _long_sleeves(u: Array, v: Array, spread: float, width: Array, length: float) -> Array:
    return _union(
        _rotated_box(u, v, -spread, 0.5, width, length, -0.18),
        _rotated_box(u, v, spread, 0.5, width, length, 0.18),
    )


def _pullover(u: Array, v: Array, p: Array) -> Array:
    torso = _box(u, v, 0, 0.5, 7.0 + p[0], 10.5)
    body = _cut(
        _union(torso, _long_sleeves(u, v, 10.0, 2.4 + 0.6 * p[1], 10.0)), _ellipse(u, v, 0, -10, 2.5, 1.6)
    )
    rib = 1.0 - 0.35 * _fill(_box(u, v, 0, 10.0, 7.0, 1.0))
    return _fill(body) * rib


def _dress(u: Array, v: Array, p: Array) -> Array:
    flare = 8.0 + 3.0 * p[0]
    t = np.clip((v + 3.0) / 16.0, 0.0, 1.0)
    skirt = np.maximum(np.abs(u) - (4.0 + (flare - 4.0) * t), np.abs(v - 5.0) - 8.0)
    bodice = _box(u, v, 0, -7.5, 4.0 + 0.8 * p[1], 4.5)
    straps = _union(_box(u, v, -3.0, -12.5, 0.8, 1.2), _box(u, v, 3.0, -12.5, 0.8, 1.2))
    return _fill(_union(skirt, bodice, straps))


def _coat(u: Array, v: Array, p: Array) -> Array:
    torso = _box(u, v, 0, 1.0, 7.8 + p[0], 12.0)
    body = _union(torso, _long_sleeves(u, v, 10.8, 2.6 + 0.6 * p[1], 11.0))
    opening = _line(_box(u, v, 0, 3.0, 0.0, 10.0), 0.4)
    lapels = _line(_rotated_box(u, v, 0, -8.0, 0.0, 3.5, 0.5), 0.3) + _line(
        _rotated_box(u, v, 0, -8.0, 0.0, 3.5, -0.5), 0.3
    )
    return _fill(body) * (1.0 - 0.7 * np.clip(opening + lapels, 0.0, 1.0))


def _sandal(u: Array, v: Array, p: Array) -> Array:
    sole = _rotated_box(u, v, 0, 8.0, 12.5, 1.3, -0.05)
    straps = _union(
        *(_rotated_box(u, v, x, 3.0, 0.9, 5.5, 0.6 + 0.3 * p[0]) for x in (-7.0, -1.5, 4.0)),
        _rotated_box(u, v, 9.0, 2.5, 0.9, 5.0, -0.3),
    )
    return _fill(_union(sole, straps))


def _shirt(u: Array, v: Array, p: Array) -> Array:
    torso = _box(u, v, 0, 1.0, 6.8 + p[0], 11.0)
    body = _cut(
        _union(torso, _long_sleeves(u, v, 9.6, 2.0 + 0.5 * p[1], 10.5)), _ellipse(u, v, 0, -10.5, 2.0, 1.4)
    )
    collar = _union(
        _rotated_box(u, v, -2.0, -9.0, 2.0, 1.0, 0.6), _rotated_box(u, v, 2.0, -9.0, 2.0, 1.0, -0.6)
    )
    buttons = _union(*(_ellipse(u, v, 0.0, y, 0.8, 0.8) for y in (-5.0, -1.0, 3.0, 7.0)))
    return np.clip(_fill(_union(body, collar)) - 0.6 * _fill(buttons), 0.0, 1.0)


def _sneaker(u: Array, v: Array, p: Array) -> Array:
    body = _union(_ellipse(u, v, 1.0, 5.0, 12.0, 4.2 + p[0]), _box(u, v, -6.0, 3.0, 5.5, 3.5 + p[0]))
    sole = _box(u, v, 0.5, 9.0, 12.5, 1.2)
    laces = sum(_line(_rotated_box(u, v, x, 2.5, 0.0, 2.0, 0.7), 0.3) for x in (-1.0, 2.0, 5.0))
    upper = _fill(body) * (1.0 - 0.6 * np.clip(laces, 0.0, 1.0))
    return np.maximum(upper * 0.8, _fill(sole))


def _bag(u: Array, v: Array, p: Array) -> Array:
    body = _box(u, v, 0, 4.0, 10.0 + 1.5 * p[0], 8.0)
    ring = np.abs(_ellipse(u, v, 0, -4.0, 5.5 + p[1], 6.0)) - 1.2
    handle = np.maximum(ring, v + 4.0)
    flap = _line(_box(u, v, 0, 0.0, 10.0, 0.0), 0.3)
    return _fill(_union(body, handle)) * (1.0 - 0.5 * flap)


def _ankle_boot(u: Array, v: Array, p: Array) -> Array:
    shaft = _box(u, v, 3.0, -3.0, 4.5 + p[0], 8.5)
    foot = _box(u, v, -2.0, 7.0, 10.0, 4.0)
    toe = _ellipse(u, v, -10.5, 8.0, 3.0, 3.0)
    heel = _box(u, v, 6.0, 11.5, 2.8, 1.5)
    return _fill(_union(shaft, foot, toe, heel))


_CLASSES: tuple[Callable[[Array, Array, Array], Array], ...] = (
    _tshirt,
    _trouser,
    _pullover,
    _dress,
    _coat,
    _sandal,
    _shirt,
    _sneaker,
    _bag,
    _ankle_boot,
)


def generate(count: int, *, seed: int = 0, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (uint8 ``[count, 28, 28]``, black background) and balanced labels (uint8)."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    rng = np.random.default_rng([seed, _SPLITS[split]])
    labels = rng.permutation(np.arange(count) % len(_CLASSES)).astype(np.uint8)
    params = {
        "scale": rng.uniform(0.78, 1.1, count),
        "aspect": rng.uniform(0.85, 1.15, count),
        "angle": rng.uniform(-0.22, 0.22, count),
        "shift": rng.uniform(-3.0, 3.0, (count, 2)),
        "shape": rng.uniform(0.0, 1.0, (_SHAPE_PARAMS, count)),
        "brightness": rng.uniform(0.45, 1.0, count),
        "stripes": rng.uniform(0.0, 0.35, count) * (rng.random(count) < 0.5),
        "stripe_freq": rng.uniform(0.6, 1.6, count),
        "stripe_phase": rng.uniform(0.0, 2 * np.pi, count),
        "noise": rng.uniform(8.0, 40.0, count),
    }
    images = np.empty((count, SIZE, SIZE), np.uint8)
    for start in range(0, count, _CHUNK):
        chunk = slice(start, min(start + _CHUNK, count))
        noise_rng = np.random.default_rng([seed, _SPLITS[split], start])
        images[chunk] = _render(
            labels[chunk],
            {k: v[..., chunk] if k == "shape" else v[chunk] for k, v in params.items()},
            noise_rng,
        )
    return images, labels


def _render(labels: np.ndarray, params: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    n = len(labels)
    grid = np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2
    x = np.broadcast_to(grid[None, None, :], (n, SIZE, SIZE))
    y = np.broadcast_to(grid[None, :, None], (n, SIZE, SIZE))
    col = lambda a: np.asarray(a, np.float32)[:, None, None]  # noqa: E731
    # Inverse affine: image pixel -> garment coordinates.
    dx, dy = x - col(params["shift"][:, 0]), y - col(params["shift"][:, 1])
    cos, sin = np.cos(col(params["angle"])), np.sin(col(params["angle"]))
    u = (cos * dx + sin * dy) / (col(params["scale"]) * col(params["aspect"]))
    v = (-sin * dx + cos * dy) / (col(params["scale"]) / col(params["aspect"]))
    coverage = np.zeros((n, SIZE, SIZE), np.float32)
    shape = params["shape"]
    for label, draw in enumerate(_CLASSES):
        members = np.flatnonzero(labels == label)
        if members.size:
            per_sample = shape[:, members][:, :, None, None].astype(np.float32)
            coverage[members] = draw(u[members], v[members], per_sample)
    stripes = 1.0 - col(params["stripes"]) * (
        0.5 + 0.5 * np.sin(col(params["stripe_freq"]) * v + col(params["stripe_phase"]))
    )
    texture = 1.0 - 0.12 * rng.random((n, SIZE, SIZE), dtype=np.float32)
    values = 255.0 * coverage * col(params["brightness"]) * stripes * texture
    values += (
        (coverage > 0.05) * rng.standard_normal((n, SIZE, SIZE), dtype=np.float32) * col(params["noise"])
    )
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)

"""Turning a picture of a digit into an MNIST input: ``[784]`` float32 in [0, 1].

MNIST's convention (LeCun et al.): a white digit on a black background; the digit is
size-normalised to fit a 20x20 box (aspect ratio kept) and placed in a 28x28 image so
that its centre of mass is at the centre. :func:`mnist_from_image` applies it to any
picture Pillow reads (PNG, JPEG, ...; any size, colour or grey):

1. to grey levels in [0, 1];
2. a dark digit on a light background (the way people draw) is inverted: the background
   is taken from the image's border;
3. cropped to the digit's bounding box (pixels brighter than 0.1 of its range);
4. scaled so the longer side is 20 pixels (Lanczos), placed in 28x28 centred by mass.
"""

from __future__ import annotations

import os

import numpy as np


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install 'fnmlp[mnist]'") from None
    return Image


def load_grey(path: str | os.PathLike) -> np.ndarray:
    """The picture at ``path`` as grey levels ``[H, W]`` float32 in [0, 1]."""
    Image = _pil()
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA") or "transparency" in img.info:
                # transparent pixels are the paper: flatten onto white
                img = img.convert("RGBA")
                bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(bg, img)
            grey = np.asarray(img.convert("L"), np.float32) / 255.0
    except (OSError, SyntaxError, ValueError) as e:  # PIL.UnidentifiedImageError is OSError
        raise ValueError(f"{path}: not an image Pillow can read ({e})") from None
    return grey


def mnist_from_grey(grey: np.ndarray, where: str = "image") -> np.ndarray:
    """Grey levels ``[H, W]`` in [0, 1] -> an MNIST input ``[784]`` (see module doc)."""
    Image = _pil()
    g = np.asarray(grey, np.float32)
    if g.ndim != 2 or min(g.shape) < 1:
        raise ValueError(f"{where}: expected a 2-D grey image; got shape {g.shape}")
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) > 0.5:  # light paper, dark ink: MNIST is the other way round
        g = 1.0 - g
    g = g - np.median(border if np.median(border) <= 0.5 else 1.0 - border)
    g = np.clip(g, 0, None)
    if g.max() <= 0.05:
        raise ValueError(f"{where}: no digit found (the image is blank)")
    g = g / g.max()
    rows, cols = np.nonzero(g > 0.1)
    g = g[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    h, w = g.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize(
        size, Image.LANCZOS), np.float32) / 255.0  # [<=20, <=20]
    out = np.zeros((28, 28), np.float32)
    total = small.sum()
    ys, xs = np.indices(small.shape)
    cy, cx = (ys * small).sum() / total, (xs * small).sum() / total
    top = int(round(14 - cy - 0.5 + 0.5))
    left = int(round(14 - cx - 0.5 + 0.5))
    top = min(max(top, 0), 28 - small.shape[0])
    left = min(max(left, 0), 28 - small.shape[1])
    out[top: top + small.shape[0], left: left + small.shape[1]] = small
    return np.clip(out, 0, 1).reshape(784)


def mnist_from_image(path: str | os.PathLike) -> np.ndarray:
    """The picture at ``path`` as an MNIST input ``[784]`` float32 in [0, 1]."""
    return mnist_from_grey(load_grey(path), str(path))

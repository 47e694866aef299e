"""Digits re-drawn the way people bring them: on paper, photographed. Used by
tests/test_images.py and benchmarks/bench_photos.py.

``ink`` is a digit's ink density ``[h, w]`` in [0, 1] (an MNIST digit, or one rendered
with Pillow's font); :func:`save_picture` writes it as a picture file of one ``KIND``.
Each kind is what a photo of paper brings, or (``mnist_28``) MNIST's own format; none of
them changes which digit it is.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

KINDS = ("clean", "grey_paper_noise", "shadow", "exif_rotated_jpeg", "png16", "speck",
         "thin", "thick", "small_on_page", "light_on_dark", "speck_near", "page_on_dark_desk",
         "all_at_once", "mnist_28")


def render_digit(d: str, size: int = 200) -> np.ndarray:
    """The digit ``d`` in Pillow's default font (scalable), ink density ``[size, size]``."""
    img = Image.new("L", (size, size), 0)
    font = ImageFont.load_default(size=int(size * 0.7))
    ImageDraw.Draw(img).text((size / 2, size / 2), d, fill=255, font=font, anchor="mm",
                             stroke_width=max(1, size // 40), stroke_fill=255)
    return np.asarray(img, np.float32) / 255


def mnist_digit(ink: np.ndarray) -> np.ndarray:
    """``ink`` drawn as MNIST draws a digit (LeCun et al. 1998), ``[28, 28]`` in [0, 1] on
    the 8-bit grid of a PNG: white on black, scaled (Lanczos, aspect kept) so its box's
    longer side is 20 pixels, placed in 28x28 and shifted by whole pixels so its centre
    of mass is at (14, 14), its brightest pixel 1. An ink that is already 28x28 is taken
    for one of MNIST's own digits and kept as it is."""
    ink = np.clip(np.asarray(ink, np.float32), 0, 1)
    if ink.shape == (28, 28):
        return np.round(ink * 255) / 255
    rows, cols = np.nonzero(ink > 0.05)
    box = ink[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    h, w = box.shape
    new = (max(1, round(w * 20 / max(h, w))), max(1, round(h * 20 / max(h, w))))  # (W, H)
    small = np.clip(np.asarray(Image.fromarray(box, "F").resize(new, Image.LANCZOS)), 0, None)
    out = np.zeros((28, 28), np.float32)
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    out[top: top + small.shape[0], left: left + small.shape[1]] = small / small.max()
    out = np.round(out * 255) / 255  # 8 bits, then centred: a PNG keeps the centre
    cy, cx = ndimage.center_of_mass(out)
    return np.roll(out, (round(14 - cy), round(14 - cx)), (0, 1))  # whole pixels, as MNIST


def _canvas(ink: np.ndarray, up: int, margin: float) -> np.ndarray:
    """``ink`` scaled up ``up`` times (bilinear) on a blank margin, ``[H, W]`` in [0, 1]."""
    big = np.clip(ndimage.zoom(ink, up, order=1), 0, 1)
    pad = int(margin * max(big.shape))
    return np.pad(big, pad)


def picture(ink: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Grey levels ``[H, W]`` in [0, 1] of ``ink`` photographed as ``kind`` (not saved);
    ``mnist_28`` is no photo but MNIST's own format (:func:`mnist_digit`)."""
    if kind == "mnist_28":
        return mnist_digit(ink)
    up = 280 // max(ink.shape) if max(ink.shape) < 100 else 1
    d = _canvas(ink, max(up, 1), 0.15)
    paper, pen, noise, light = 1.0, 0.0, 0.0, 1.0
    if kind in ("thin", "thick"):
        r = max(1, round(0.012 * max(d.shape)))  # a fine pen: about half MNIST's stroke
        d = (ndimage.grey_erosion(d, size=(3 * r, 3 * r)) if kind == "thin"
             else ndimage.grey_dilation(d, size=(4 * r + 1, 4 * r + 1)))  # a marker
        d = ndimage.gaussian_filter(d, 1.0)
    if kind == "small_on_page":
        d = np.pad(d, ((d.shape[0], 2 * d.shape[0]), (2 * d.shape[1], d.shape[1])))
    if kind in ("grey_paper_noise", "all_at_once", "exif_rotated_jpeg", "png16"):
        paper, pen, noise = 0.62, 0.18, 0.02
    h, w = d.shape
    if kind in ("shadow", "all_at_once"):
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        light = 1.0 - 0.55 * np.clip(1.2 * xx + 0.4 * yy - 0.2, 0, 1)  # a phone's shadow
    g = (paper * (1 - d) + pen * d) * light
    if kind == "speck" or kind == "all_at_once":
        r0, c0 = int(0.06 * h), int(0.9 * w)
        s = max(2, int(0.015 * max(h, w)))
        g[r0: r0 + s, c0: c0 + s] = pen
    if kind == "speck_near":  # a dot of dirt just beside the digit's box
        rows, cols = np.nonzero(d > 0.5)
        s = max(3, int(0.025 * max(h, w)))  # a pen-tip-sized dot
        gap = int(0.08 * max(np.ptp(rows), np.ptp(cols)))
        r0, c0 = max(rows.min() - gap, 0), min(cols.max() + gap, w - s)
        g[r0: r0 + s, c0: c0 + s] = pen
    if kind == "light_on_dark":
        g = 1 - g
    if kind == "page_on_dark_desk":
        g = _on_desk(g * 0.9, rng)
    if noise:
        g = g + rng.normal(0, noise, g.shape)
    return np.clip(g, 0, 1).astype(np.float32)


def _on_desk(page: np.ndarray, rng: np.random.Generator, angle: float = 5.0) -> np.ndarray:
    """``page`` turned by ``angle`` degrees on a dark wooden desk that shows around it (a
    third of the page's size on each side), ``[H', W']``."""
    h, w = page.shape
    turned = ndimage.rotate(page, angle, reshape=True, order=1, cval=-1.0)  # -1: off the page
    ph, pw = int(0.35 * h), int(0.35 * w)
    turned = np.pad(turned, ((ph, ph), (pw, pw)), constant_values=-1.0)
    grain = ndimage.gaussian_filter(rng.normal(0, 1, turned.shape), (2, 25))  # wood grain
    desk = 0.22 + 0.6 * grain
    return np.where(turned < -0.5, desk, np.clip(turned, 0, 1))


def save_picture(ink: np.ndarray, kind: str, path, rng: np.random.Generator) -> None:
    """Writes ``ink`` photographed as ``kind`` to ``path`` (PNG or JPEG by kind)."""
    g = picture(ink, kind, rng)
    img8 = Image.fromarray((g * 255).round().astype(np.uint8))
    if kind == "png16":
        Image.fromarray((g * 65535).round().astype(np.uint16)).save(path, format="PNG")
    elif kind in ("exif_rotated_jpeg", "all_at_once"):
        # a portrait photo stored sideways; the EXIF tag (orientation 6: rotate 90
        # clockwise to view) says how to turn it upright
        exif = Image.Exif()
        exif[0x0112] = 6
        img8.rotate(90, expand=True).convert("RGB").save(path, format="JPEG", quality=75,
                                                         exif=exif)
    else:
        img8.save(path, format="PNG")

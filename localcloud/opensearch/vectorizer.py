"""Offline image vectors for the local stand-in of OpenSearch image search.

Alibaba Cloud OpenSearch turns each image into a 512-d CLIP vector on its own side.  The local
stand-in server cannot do that: there are no model weights here and none may be downloaded.  This
module gives it the next best thing that needs no weights at all: a deterministic, hand-made
512-d *image descriptor*.

What it is good for, and what it is not
---------------------------------------
The descriptor measures how an image *looks*: its colours, its coarse layout of light and dark,
the directions of its edges.  It is built so that an image finds itself first and its
near-duplicates (the same picture re-encoded as JPEG at another quality, resized, a little
brighter or darker, cropped by a few per cent at the border) score close to it, while unrelated
pictures score lower.  That is what the stand-in needs to exercise indexing, querying, ranking and
deduplication end to end.

It is **not** CLIP.  Its scores are not comparable with scores from the real service; it knows
nothing of what is *in* a picture (two different photos of cats are not closer than a cat and a
car of similar colours); it is not invariant to rotation, mirroring or large crops; images that
differ only in a small detail (the same icon with another emblem) score very close; and it cannot
put text in the same space, so :meth:`ImageDescriptorVectorizer.embed_text` raises
:class:`TextVectorizationUnavailable`.  Anything that needs semantic or text-to-image search must
be tested against the real service, or with a :class:`Vectorizer` that loads a CLIP model.

The descriptor (512 = 128 + 256 + 128)
--------------------------------------
Each image is decoded with Pillow (EXIF orientation applied; JPEGs decoded in draft mode, i.e. at
1/2, 1/4 or 1/8 scale straight from the DCT, which is several times faster), squeezed to a fixed
128 x 128 RGB working image with an area-averaging filter, and any transparency is flattened
onto white.  One small fixed working size makes the descriptor indifferent to the original
resolution and smooths away JPEG block noise.  Three blocks are then computed, each
L2-normalised on its own and weighted so that the squared weights sum to 1; the cosine of two
descriptors is therefore a fixed weighted mean of the three per-block cosines:

``colour`` (128 = 8 hue x 4 saturation x 4 value bins, weight^2 = 0.40)
    An HSV histogram with soft (linear) voting between neighbouring bins, so that a 5 % brightness
    change or JPEG chroma noise moves mass smoothly instead of flipping pixels between bins.  Hue
    only counts in proportion to how colourful a pixel is: near-grey pixels spread their vote
    evenly over all hues, so a faint tint that brightening or re-encoding removes does not move
    a whole white background from one hue bin to another.  Saturation is measured against a
    floored value so that noise in dark areas does not read as strong colour.  Pixels vote with
    a centre-weighted window that fades out over the outer 12 % of each side, so cropping a few
    per cent of border removes only low-weight votes.  The histogram is Hellinger-normalised
    (square root of the L1-normalised counts), the usual way to make cosine comparison of
    histograms behave like a proper histogram distance.  Colour is nearly invariant to resizing
    and small crops and cheaply separates most unrelated images, hence the largest weight.

``layout`` (256 = 16 x 16 grey thumbnail, weight^2 = 0.35)
    Luminance averaged over a 16 x 16 grid of a lightly blurred working image, mean-centred, with
    the border cells given half weight (again for crop tolerance), and L2-normalised.  Centring
    and normalising make it invariant to any brightness / contrast change of the form
    ``a * grey + b``; cells of 6.25 % of a side are coarse enough that a 3 % border crop shifts
    content by about half a cell.  It tells apart images with the same colours but a different
    arrangement.

``edges`` (128 = 4 x 4 grid x 8 gradient orientations, weight^2 = 0.25)
    A HOG/SIFT-like histogram of gradient directions (signed, 45 degree bins, soft-binned in angle
    and bilinearly in space) on a blurred 64 x 64 grey image, magnitude-weighted, L2-normalised,
    clipped at 0.2 and renormalised (the SIFT trick, so a few strong edges do not dominate).  It
    captures texture and shape independently of colour and brightness.

The weights were chosen by measuring near-duplicate retrieval on synthetic images and on a
hundred-odd icons, plots and screenshots; retrieval is not very sensitive to them.

Determinism
-----------
After decoding, only IEEE-exact elementwise operations (+, -, *, /, sqrt), sequential
``bincount`` accumulation and correctly rounded ``math.fsum`` sums are used: no BLAS, no
transcendental functions, no SIMD-width-dependent reductions.  The same bytes therefore give the
same float32 vector bit for bit on every run and, given the same Pillow build (decoders such as
libjpeg-turbo and libwebp and the resampler are part of it), on every machine.  Another Pillow
or libjpeg version may decode a few pixels differently and change the last bits, not the
ranking.

Cost: a few milliseconds per typical image, most of it decoding.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Final, Protocol, runtime_checkable

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DIMENSION",
    "MAX_PIXELS",
    "ImageDecodeError",
    "ImageDescriptorVectorizer",
    "TextVectorizationUnavailable",
    "Vectorizer",
    "cosine_top_k",
]

DIMENSION: Final[int] = 512
"""Length of every vector; the same as OpenSearch's CLIP image vectors."""

MAX_PIXELS: Final[int] = 50_000_000
"""Largest image (width x height, as declared in its header) that we agree to decode."""

# Sizes of the three blocks; they must add up to DIMENSION.
_HUE_BINS, _SAT_BINS, _VAL_BINS = 8, 4, 4
_THUMB = 16
_GRID, _ORIENTATIONS = 4, 8
_COLOUR_DIM = _HUE_BINS * _SAT_BINS * _VAL_BINS  # 128
_LAYOUT_DIM = _THUMB * _THUMB  # 256
_EDGE_DIM = _GRID * _GRID * _ORIENTATIONS  # 128
assert _COLOUR_DIM + _LAYOUT_DIM + _EDGE_DIM == DIMENSION

# Squared weights sum to 1, so the descriptor's cosine is the weighted mean of block cosines.
_W_COLOUR = math.sqrt(0.40)
_W_LAYOUT = math.sqrt(0.35)
_W_EDGES = math.sqrt(0.25)

_WORK = 128  # side of the working image
_EDGE_SIDE = 64  # side of the image the gradients are taken on
_BORDER_FADE = 0.12  # fraction of each side over which the colour window fades out
_SAT_FLOOR = 0.25  # lower bound of the value used as the saturation denominator
_HUE_CERTAIN_CHROMA = 0.15  # chroma (max - min of RGB in [0, 1]) from which hue counts fully
_SIFT_CLIP = 0.2


class ImageDecodeError(ValueError):
    """The bytes are not an image we can decode (not an image, truncated, corrupt, too large)."""


class TextVectorizationUnavailable(RuntimeError):
    """Text queries need a CLIP text encoder, which the offline vectorizer does not have."""


@runtime_checkable
class Vectorizer(Protocol):
    """Turns images (and, where a model allows, text) into DIMENSION-long unit vectors."""

    name: str
    description: str

    def embed_image(self, data: bytes) -> np.ndarray:
        """Return a float32 vector of shape (DIMENSION,) with unit L2 norm.

        Raises :class:`ImageDecodeError` if ``data`` is not a decodable image.
        """
        ...

    def embed_text(self, text: str) -> np.ndarray:
        """Return a float32 vector of shape (DIMENSION,) in the same space as the images.

        Raises :class:`TextVectorizationUnavailable` if the implementation has no text model.
        """
        ...


class ImageDescriptorVectorizer:
    """The default, weight-free vectorizer: a colour / layout / edge descriptor (module doc).

    Stateless and thread-safe; all instances give identical vectors.
    """

    name: str = "local-descriptor-v1"
    description: str = (
        "Deterministic 512-d hand-made image descriptor (HSV colour histogram, 16x16 grey "
        "layout, edge-orientation grid) that finds the same image and its near-duplicates; it "
        "is not CLIP, knows nothing of image content, its scores are not comparable with "
        "OpenSearch's, and it cannot embed text."
    )

    def embed_image(self, data: bytes) -> np.ndarray:
        """Describe the image in ``data`` (any format Pillow reads; first frame if animated)."""
        return _describe(_decode_to_working_rgb(data))

    def embed_text(self, text: str) -> np.ndarray:
        """Always raises :class:`TextVectorizationUnavailable`: there is no text model here."""
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise TextVectorizationUnavailable(
            f"{self.name} cannot embed text ({shown!r}): text-to-image search needs a CLIP-style "
            "text encoder whose vectors share the 512-d image space, i.e. model weights, and "
            "none are available offline. This local vectorizer only compares how images look. "
            "To test text queries use the real OpenSearch service, or plug in a Vectorizer that "
            "loads a CLIP model (the image and text towers of the same checkpoint)."
        )


# --------------------------------------------------------------------------------------------
# Decoding


def _decode_to_working_rgb(data: bytes) -> np.ndarray:
    """Decode ``data`` into a float64 (WORK, WORK, 3) RGB array with values in [0, 1]."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"embed_image expects bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageDecodeError("empty input: zero bytes are not an image")
    try:
        # Pillow itself warns from ~89 MP and refuses from ~179 MP (DecompressionBombError);
        # our own MAX_PIXELS check is stricter and runs before any pixel is decoded.
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError(f"image has no pixels ({width}x{height})")
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(
                    f"image is {width}x{height} = {width * height:,} pixels, over the "
                    f"{MAX_PIXELS:,} pixel limit (possible decompression bomb)"
                )
            if im.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale while staying >= 2x the working size.
                im.draft("RGB", (2 * _WORK, 2 * _WORK))
            im.load()  # raises on truncated data (unless ImageFile.LOAD_TRUNCATED_IMAGES is set)
            return _to_working_rgb(_orient(im))
    except ImageDecodeError:
        raise
    except MemoryError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            f"image is too large to decode safely (possible decompression bomb): {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"not a decodable image: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        raise ImageDecodeError(f"image data is corrupt or truncated: {exc}") from exc
    except Exception as exc:  # any other failure inside a Pillow plugin on hostile input
        raise ImageDecodeError(f"image could not be decoded: {exc!r}") from exc


def _orient(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, if any (without copying the image when there is none)."""
    try:
        if im.getexif().get(ExifTags.Base.Orientation, 1) in (1, None):
            return im
        return ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not cost us the image itself
        return im


def _to_working_rgb(im: Image.Image) -> np.ndarray:
    """Any mode -> WORK x WORK RGB floats, transparency flattened onto white."""
    size = (_WORK, _WORK)
    mode = im.mode
    if mode in ("I", "F") or mode.startswith("I;"):
        grey = _nominal_unit_range(im.convert("F").resize(size, Image.Resampling.BOX), mode)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    try:
        im = im.convert("RGBA" if has_alpha else "RGB")
    except ValueError as exc:  # e.g. LAB, which Pillow cannot turn into RGB without a profile
        raise ImageDecodeError(f"unsupported image mode {mode!r}: {exc}") from exc
    # Pillow resizes RGBA with premultiplied alpha, so shrinking before flattening is exact
    # enough and much cheaper than flattening the full-size image.
    im = im.resize(size, Image.Resampling.BOX)
    if has_alpha:
        background = Image.new("RGBA", size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im).convert("RGB")
    return np.asarray(im, dtype=np.float64) / 255.0


def _nominal_unit_range(im: Image.Image, source_mode: str) -> np.ndarray:
    """16/32-bit integer or float greyscale (already resized, mode F) -> values in [0, 1].

    16-bit data is scaled by its nominal range (0..65535).  32-bit integers or floats carry no
    nominal range: [0, 1] floats are taken as is, data within 0..255 or 0..65535 is scaled by
    that range, and anything else is stretched between its own minimum and maximum.
    """
    arr = np.asarray(im, dtype=np.float64)
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    if source_mode.startswith("I;16"):
        scaled = arr / 65535.0
    else:
        top, bottom = float(arr.max()), float(arr.min())
        if bottom >= 0.0 and top <= 1.0 and source_mode == "F":
            scaled = arr
        elif bottom >= 0.0 and top <= 255.0:
            scaled = arr / 255.0
        elif bottom >= 0.0 and top <= 65535.0:
            scaled = arr / 65535.0
        else:
            scaled = (arr - bottom) / (top - bottom)
    return np.clip(scaled, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# The descriptor


def _describe(rgb: np.ndarray) -> np.ndarray:
    grey = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    vec = np.concatenate(
        [
            _W_COLOUR * _colour_histogram(rgb),
            _W_LAYOUT * _layout(grey),
            _W_EDGES * _edge_histogram(grey),
        ]
    )
    return _unit(vec).astype(np.float32)


def _fsum(values: np.ndarray) -> float:
    """Correctly rounded sum: independent of summation order, so identical on every machine."""
    return math.fsum(values.ravel().tolist())


def _unit(vec: np.ndarray) -> np.ndarray:
    norm = math.sqrt(_fsum(vec * vec))
    if norm < 1e-12:
        return np.zeros_like(vec)
    return vec / norm


def _fade(side: int, fade: float) -> np.ndarray:
    """1 in the middle, a smoothstep fall towards 0 over the outer ``fade`` of each end."""
    pos = (np.arange(side) + 0.5) / side
    t = np.clip(np.minimum(pos, 1.0 - pos) / fade, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


_COLOUR_WINDOW = np.outer(_fade(_WORK, _BORDER_FADE), _fade(_WORK, _BORDER_FADE)).ravel()
_LAYOUT_WINDOW = 0.5 + 0.5 * np.outer(_fade(_THUMB, _BORDER_FADE), _fade(_THUMB, _BORDER_FADE))


def _soft_bins(
    values: np.ndarray, bins: int, circular: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear soft-binning of values in [0, 1]: (lower bin, upper bin, weight of upper bin).

    Bin ``i`` is centred on ``(i + 0.5) / bins``; outside the outer centres everything goes to
    the outer bin, unless ``circular``.
    """
    pos = values * bins - 0.5
    low_f = np.floor(pos)
    frac = pos - low_f
    low = low_f.astype(np.int64)
    high = low + 1
    if circular:
        low %= bins
        high %= bins
    else:
        frac = np.where(low < 0, 1.0, np.where(high > bins - 1, 0.0, frac))
        low = np.clip(low, 0, bins - 1)
        high = np.clip(high, 0, bins - 1)
    return low, high, frac


def _colour_histogram(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0].ravel(), rgb[..., 1].ravel(), rgb[..., 2].ravel()
    vmax = np.maximum(np.maximum(r, g), b)
    chroma = vmax - np.minimum(np.minimum(r, g), b)
    # Plain chroma / value explodes in the shadows, where a few levels of JPEG noise would
    # otherwise read as strong colour; a floor under the denominator keeps it calm.
    sat = chroma / np.maximum(vmax, _SAT_FLOOR)
    safe = np.where(chroma > 0, chroma, 1.0)
    hue6 = np.where(
        vmax == r,
        np.remainder((g - b) / safe, 6.0),
        np.where(vmax == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = np.where(chroma > 0, hue6 / 6.0, 0.0)
    # How far hue can be trusted: not at all for greys, fully once the colour is clear.
    certainty = np.clip(chroma / _HUE_CERTAIN_CHROMA, 0.0, 1.0)

    h0, h1, hf = _soft_bins(hue, _HUE_BINS, circular=True)
    s0, s1, sf = _soft_bins(sat, _SAT_BINS, circular=False)
    v0, v1, vf = _soft_bins(vmax, _VAL_BINS, circular=False)

    sv_bins = _SAT_BINS * _VAL_BINS
    chromatic = np.zeros(_COLOUR_DIM, dtype=np.float64)
    achromatic = np.zeros(sv_bins, dtype=np.float64)
    for sb, sw in ((s0, 1.0 - sf), (s1, sf)):
        for vb, vw in ((v0, 1.0 - vf), (v1, vf)):
            sv = sb * _VAL_BINS + vb
            w = _COLOUR_WINDOW * sw * vw
            achromatic += np.bincount(sv, weights=w * (1.0 - certainty), minlength=sv_bins)
            for hb, hw in ((h0, 1.0 - hf), (h1, hf)):
                chromatic += np.bincount(
                    hb * sv_bins + sv, weights=w * certainty * hw, minlength=_COLOUR_DIM
                )
    # Near-grey mass goes to every hue bin alike (same (s, v) cell).
    hist = chromatic + np.tile(achromatic / _HUE_BINS, _HUE_BINS)
    total = _fsum(hist)
    if total <= 0.0:
        return np.zeros(_COLOUR_DIM)
    return np.sqrt(hist / total)  # Hellinger: unit L2 norm by construction


def _box_blur3(img: np.ndarray) -> np.ndarray:
    """3 x 3 box blur with edge replication (against pixel noise and JPEG blocks)."""
    p = np.pad(img, 1, mode="edge")
    rows = p[:-2, :] + p[1:-1, :] + p[2:, :]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9.0


def _block_mean(img: np.ndarray, cells: int) -> np.ndarray:
    """Average over a cells x cells grid by sequential slice additions (fixed order)."""
    step = img.shape[0] // cells
    rows = img[0::step, :].copy()
    for i in range(1, step):
        rows += img[i::step, :]
    out = rows[:, 0::step].copy()
    for j in range(1, step):
        out += rows[:, j::step]
    return out / float(step * step)


def _layout(grey: np.ndarray) -> np.ndarray:
    thumb = _block_mean(_box_blur3(grey), _THUMB)
    w = _LAYOUT_WINDOW
    mean = _fsum(thumb * w) / _fsum(w)
    return _unit(((thumb - mean) * w).ravel())


def _pseudo_angle(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Direction of (gx, gy) as a fraction of a turn in [0, 1), without atan2.

    A piecewise rational, monotone stand-in for ``atan2(gy, gx) / 2pi`` that is exact at every
    multiple of 45 degrees (so the 8 orientation bins keep their true 45 degree boundaries) and
    uses only IEEE-exact operations, unlike libm/SIMD atan2, which may differ in the last bit
    between machines.
    """
    ax, ay = np.abs(gx), np.abs(gy)
    total = ax + ay
    d = np.where(total > 0, ay / np.where(total > 0, total, 1.0), 0.0)  # 0..1 in a quadrant
    # Map the quadrant offset to its quarter turn: 0..1 -> 0..0.25, by quadrant.
    quarter = np.where(
        gx >= 0,
        np.where(gy >= 0, d, 4.0 - d),
        np.where(gy >= 0, 2.0 - d, 2.0 + d),
    )
    return np.remainder(quarter / 4.0, 1.0)


_CELL_LOW, _CELL_HIGH, _CELL_FRAC = _soft_bins(
    (np.arange(_EDGE_SIDE) + 0.5) / _EDGE_SIDE, _GRID, circular=False
)
_ROWS, _COLS = (a.ravel() for a in np.indices((_EDGE_SIDE, _EDGE_SIDE)))
for _table in (_COLOUR_WINDOW, _LAYOUT_WINDOW, _CELL_LOW, _CELL_HIGH, _CELL_FRAC, _ROWS, _COLS):
    _table.setflags(write=False)  # shared by all threads: make accidental writes fail
del _table


def _edge_histogram(grey: np.ndarray) -> np.ndarray:
    small = _box_blur3(_block_mean(grey, _EDGE_SIDE))
    p = np.pad(small, 1, mode="edge")
    gx = ((p[1:-1, 2:] - p[1:-1, :-2]) * 0.5).ravel()
    gy = ((p[2:, 1:-1] - p[:-2, 1:-1]) * 0.5).ravel()
    magnitude = np.sqrt(gx * gx + gy * gy)
    o0, o1, of = _soft_bins(_pseudo_angle(gx, gy), _ORIENTATIONS, circular=True)

    y0, y1, yf = _CELL_LOW[_ROWS], _CELL_HIGH[_ROWS], _CELL_FRAC[_ROWS]
    x0, x1, xf = _CELL_LOW[_COLS], _CELL_HIGH[_COLS], _CELL_FRAC[_COLS]
    hist = np.zeros(_EDGE_DIM, dtype=np.float64)
    for yb, yw in ((y0, 1.0 - yf), (y1, yf)):
        for xb, xw in ((x0, 1.0 - xf), (x1, xf)):
            cell = (yb * _GRID + xb) * _ORIENTATIONS
            w = magnitude * yw * xw
            for ob, ow in ((o0, 1.0 - of), (o1, of)):
                hist += np.bincount(cell + ob, weights=w * ow, minlength=_EDGE_DIM)
    hist = np.minimum(_unit(hist), _SIFT_CLIP)
    return _unit(hist)


# --------------------------------------------------------------------------------------------
# Search


def cosine_top_k(matrix: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``matrix`` (N, D) most cosine-similar to ``query`` (D,), best first.

    Returns ``(indices, scores)``: int64 row indices and float32 cosines, both of length
    ``min(k, N)``.  Rows are normalised here, so unnormalised input is fine; a zero row (or
    query) scores 0, and non-finite scores rank last.  Ties are broken by the lower row index,
    also at the cut-off, so the result is stable.  Cost: one matrix-vector product, an
    ``argpartition`` (O(N)) and a sort of the k candidates.
    """
    matrix = np.asarray(matrix)
    query = np.asarray(query)
    if matrix.ndim != 2:
        raise ValueError(f"matrix must be 2-D (N, D), got shape {matrix.shape}")
    if query.ndim != 1 or query.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"query must have shape ({matrix.shape[1]},) to match matrix {matrix.shape}, "
            f"got {query.shape}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    n = matrix.shape[0]
    k = min(int(k), n)
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)

    m = matrix.astype(np.float32, copy=False)
    q = query.astype(np.float32, copy=False)
    row_norms = np.sqrt(np.einsum("ij,ij->i", m, m))
    denom = row_norms * np.sqrt(np.dot(q, q))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scores = np.where(denom > 0, (m @ q) / np.where(denom > 0, denom, 1), 0).astype(
            np.float32
        )
    ranked = np.where(np.isfinite(scores), scores, -np.inf)

    if k < n:
        # The k-th best score; every row at least that good is a candidate, so all rows tied at
        # the cut are seen and the lowest indices win, whichever one argpartition picked.
        kth = np.argpartition(-ranked, k - 1)[k - 1]
        candidates = np.flatnonzero(ranked >= ranked[kth])
    else:
        candidates = np.arange(n)
    order = np.lexsort((candidates, -ranked[candidates]))[:k]
    chosen = candidates[order].astype(np.int64)
    return chosen, scores[chosen]

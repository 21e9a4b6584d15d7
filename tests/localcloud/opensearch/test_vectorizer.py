"""The offline image vectorizer of the local OpenSearch stand-in.

Every image here is generated (seeded) with Pillow and numpy; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from localcloud.opensearch.vectorizer import (
    DIMENSION,
    ImageDecodeError,
    ImageDescriptorVectorizer,
    TextVectorizationUnavailable,
    Vectorizer,
    cosine_top_k,
)

N_IMAGES = 64
MIN_TOP3_RATE = 0.95


# --------------------------------------------------------------------------------------------
# Synthetic images


def _rgb(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = rng.integers(0, 256, 3)
    return int(r), int(g), int(b)


def synthetic_image(seed: int) -> Image.Image:
    """A distinct picture: a background (flat, gradient, noise texture, stripes, checks) with
    random shapes in random colours, in one of a few sizes and aspect ratios."""
    rng = np.random.default_rng(seed)
    w, h = [(160, 120), (120, 160), (144, 144), (200, 110)][seed % 4]
    c1 = np.array(_rgb(rng), dtype=np.float64)
    c2 = np.array(_rgb(rng), dtype=np.float64)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    kind = (seed // 4) % 5
    if kind == 0:
        t = np.zeros((h, w))
    elif kind == 1:
        angle = rng.uniform(0, np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / (t.max() - t.min())
    elif kind == 2:
        cells = int(rng.integers(3, 12))
        noise = (rng.random((cells, cells)) * 255).astype(np.uint8)
        t = np.asarray(Image.fromarray(noise).resize((w, h), Image.Resampling.BICUBIC)) / 255.0
    elif kind == 3:
        freq = rng.uniform(3, 12)
        angle = rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
    else:
        cell = int(rng.integers(8, 32))
        t = ((np.arange(h)[:, None] // cell + np.arange(w)[None, :] // cell) % 2).astype(float)
    pixels = c1 * (1 - t[..., None]) + c2 * t[..., None]
    im = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 7))):
        colour = _rgb(rng)
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        shape = int(rng.integers(0, 4))
        if shape == 0:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        elif shape == 1:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif shape == 2:
            points = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(3)]
            draw.polygon(points, fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(3, 9)))
    return im


def encode(im: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def jpeg_q60(im: Image.Image) -> bytes:
    return encode(im, "JPEG", quality=60)


def resize_80(im: Image.Image) -> bytes:
    size = (round(im.width * 0.8), round(im.height * 0.8))
    return encode(im.resize(size, Image.Resampling.LANCZOS))


def brighter_5(im: Image.Image) -> bytes:
    return encode(ImageEnhance.Brightness(im).enhance(1.05))


def crop_3(im: Image.Image) -> bytes:
    dx, dy = round(im.width * 0.03), round(im.height * 0.03)
    return encode(im.crop((dx, dy, im.width - dx, im.height - dy)))


def all_four(im: Image.Image) -> bytes:
    """Crop 3 %, resize 80 %, 5 % brighter, then JPEG at quality 60."""
    dx, dy = round(im.width * 0.03), round(im.height * 0.03)
    out = im.crop((dx, dy, im.width - dx, im.height - dy))
    out = out.resize((round(out.width * 0.8), round(out.height * 0.8)), Image.Resampling.LANCZOS)
    return encode(ImageEnhance.Brightness(out).enhance(1.05), "JPEG", quality=60)


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "jpeg_q60": jpeg_q60,
    "resize_80pct": resize_80,
    "brightness_+5pct": brighter_5,
    "crop_3pct_border": crop_3,
    "all_four_combined": all_four,
}


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def vectorizer() -> ImageDescriptorVectorizer:
    return ImageDescriptorVectorizer()


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [synthetic_image(seed) for seed in range(N_IMAGES)]


@pytest.fixture(scope="module")
def index(vectorizer: ImageDescriptorVectorizer, images: list[Image.Image]) -> np.ndarray:
    """The (N, 512) matrix of the originals, stored as PNG."""
    return np.stack([vectorizer.embed_image(encode(im)) for im in images])


def assert_unit_vector(vec: np.ndarray) -> None:
    assert isinstance(vec, np.ndarray)
    assert vec.dtype == np.float32
    assert vec.shape == (DIMENSION,)
    assert np.all(np.isfinite(vec))
    assert abs(float(np.linalg.norm(vec.astype(np.float64))) - 1.0) < 1e-5


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.astype(np.float64), b.astype(np.float64)))


# --------------------------------------------------------------------------------------------
# API surface


def test_is_a_vectorizer_and_says_what_it_is(vectorizer: ImageDescriptorVectorizer) -> None:
    assert DIMENSION == 512
    assert isinstance(vectorizer, Vectorizer)
    assert vectorizer.name == "local-descriptor-v1"
    assert "not CLIP" in vectorizer.description
    assert "text" in vectorizer.description


def test_output_is_unit_float32_of_512(vectorizer: ImageDescriptorVectorizer, images) -> None:
    for im in images[:5]:
        assert_unit_vector(vectorizer.embed_image(encode(im)))
    # A flat image has no layout and no edges; it must still come out as a unit vector.
    assert_unit_vector(vectorizer.embed_image(encode(Image.new("RGB", (50, 40), (7, 7, 7)))))
    assert_unit_vector(vectorizer.embed_image(encode(Image.new("RGB", (1, 1), (200, 30, 30)))))


def test_bytearray_and_memoryview_are_accepted(vectorizer, images) -> None:
    data = encode(images[0])
    expected = vectorizer.embed_image(data)
    assert np.array_equal(vectorizer.embed_image(bytearray(data)), expected)
    assert np.array_equal(vectorizer.embed_image(memoryview(data)), expected)


def test_non_bytes_is_a_type_error(vectorizer) -> None:
    with pytest.raises(TypeError):
        vectorizer.embed_image("/path/to/image.png")  # type: ignore[arg-type]


def test_text_is_refused_with_an_explanation(vectorizer) -> None:
    with pytest.raises(TextVectorizationUnavailable) as caught:
        vectorizer.embed_text("a red bicycle leaning against a wall")
    message = str(caught.value)
    assert "CLIP" in message
    assert "offline" in message
    assert "model weights" in message
    assert "a red bicycle" in message
    assert isinstance(caught.value, RuntimeError)


# --------------------------------------------------------------------------------------------
# Retrieval quality


def test_every_image_finds_itself_first(index: np.ndarray) -> None:
    for i in range(len(index)):
        top, scores = cosine_top_k(index, index[i], 1)
        assert top[0] == i, f"image {i} ranked {top[0]} above itself"
        assert scores[0] == pytest.approx(1.0, abs=1e-5)


def test_distinct_images_are_not_near_each_other(index: np.ndarray) -> None:
    sims = index.astype(np.float64) @ index.astype(np.float64).T
    others = sims[~np.eye(len(index), dtype=bool)]
    print(
        f"\ncosine between distinct images: median {np.median(others):.3f}, "
        f"max {others.max():.3f}"
    )
    assert np.median(others) < 0.5
    assert others.max() < 0.9


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_near_duplicates_retrieve_the_original(
    name: str, vectorizer: ImageDescriptorVectorizer, images, index: np.ndarray
) -> None:
    transform = TRANSFORMS[name]
    top1 = top3 = 0
    own, best_other = [], []
    for i, im in enumerate(images):
        query = vectorizer.embed_image(transform(im))
        ranked, scores = cosine_top_k(index, query, 3)
        top1 += int(ranked[0] == i)
        top3 += int(i in ranked)
        sims = index.astype(np.float64) @ query.astype(np.float64)
        own.append(sims[i])
        best_other.append(np.max(np.delete(sims, i)))
    n = len(images)
    print(
        f"\n{name}: top-1 {top1 / n:.1%}, top-3 {top3 / n:.1%} of {n}; cosine to original "
        f"median {np.median(own):.3f} (min {np.min(own):.3f}), best other image median "
        f"{np.median(best_other):.3f}"
    )
    assert top3 / n >= MIN_TOP3_RATE, f"{name}: only {top3}/{n} near-duplicates found in top 3"
    # Different images rank lower: on the typical query, the original wins by a clear margin.
    assert np.median(np.array(own) - np.array(best_other)) > 0.2


# --------------------------------------------------------------------------------------------
# Determinism


def test_same_bytes_same_vector_bit_for_bit(images) -> None:
    for data in (encode(images[1]), jpeg_q60(images[2]), encode(images[3], "WEBP", quality=70)):
        first = ImageDescriptorVectorizer().embed_image(data)
        second = ImageDescriptorVectorizer().embed_image(data)
        assert first.tobytes() == second.tobytes()


def _arithmetic_image() -> Image.Image:
    """128 x 128 RGB made by integer arithmetic only (no RNG, no Pillow drawing or resampling)."""
    y, x = np.mgrid[0:128, 0:128]
    r = (x * 2 + (y // 16) * 9) % 256
    g = np.where((x - 70) ** 2 + (y - 50) ** 2 < 900, 220, (y * 3 + x) % 256)
    b = ((x // 8 + y // 8) % 2) * 150 + (x * y) % 64
    return Image.fromarray(np.stack([r, g, b], axis=-1).astype(np.uint8), "RGB")


# A 128 x 128 PNG is decoded losslessly and needs no resampling, so this digest depends only on
# the descriptor's own arithmetic, which is meant to be identical on every machine. If it
# changes, either the descriptor changed (then bump the vectorizer's name: stored vectors are
# stale) or some platform computes differently (a real determinism bug).
GOLDEN_SHA256 = "09e94e65022f4a6ba3b282e96d360cba614a495fd611dfb98c11b782e28ebcfc"


def test_descriptor_arithmetic_matches_golden_digest(vectorizer) -> None:
    vec = vectorizer.embed_image(encode(_arithmetic_image()))
    assert hashlib.sha256(vec.tobytes()).hexdigest() == GOLDEN_SHA256


# --------------------------------------------------------------------------------------------
# Formats and modes


def test_lossless_formats_give_identical_vectors(vectorizer, images) -> None:
    im = images[5]
    expected = vectorizer.embed_image(encode(im, "PNG"))
    for fmt, options in (("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})):
        got = vectorizer.embed_image(encode(im, fmt, **options))
        assert np.array_equal(got, expected), fmt


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("JPEG", {"quality": 90}), ("WEBP", {"quality": 80}), ("GIF", {})],
)
def test_lossy_formats_still_find_the_original(vectorizer, images, index, fmt, options) -> None:
    for i in (0, 7, 21, 42):
        vec = vectorizer.embed_image(encode(images[i], fmt, **options))
        assert_unit_vector(vec)
        assert cosine_top_k(index, vec, 1)[0][0] == i, (fmt, i)


def test_transparency_is_flattened_onto_white(vectorizer, images) -> None:
    im = images[6]
    mask = Image.new("L", im.size, 0)
    ImageDraw.Draw(mask).ellipse([10, 10, im.width - 10, im.height - 10], fill=255)
    # Fully transparent pixels keep a garish colour; it must not show through.
    rgba = Image.composite(im, Image.new("RGB", im.size, (255, 0, 255)), mask).convert("RGBA")
    rgba.putalpha(mask)
    on_white = Image.composite(im, Image.new("RGB", im.size, (255, 255, 255)), mask)
    expected = vectorizer.embed_image(encode(on_white))
    for data in (encode(rgba), encode(rgba, "WEBP", lossless=True), encode(rgba.convert("LA"))):
        vec = vectorizer.embed_image(data)
        assert_unit_vector(vec)
    assert cos(vectorizer.embed_image(encode(rgba)), expected) > 0.999


def test_grey_palette_and_bilevel_modes(vectorizer, images) -> None:
    im = images[9]
    grey = im.convert("L")
    assert np.array_equal(
        vectorizer.embed_image(encode(grey)), vectorizer.embed_image(encode(grey.convert("RGB")))
    )
    palette = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    assert np.array_equal(
        vectorizer.embed_image(encode(palette)),
        vectorizer.embed_image(encode(palette.convert("RGB"))),
    )
    transparent_palette = palette.copy()
    transparent_palette.info["transparency"] = 0
    assert_unit_vector(vectorizer.embed_image(encode(transparent_palette)))
    assert_unit_vector(vectorizer.embed_image(encode(im.convert("1"))))
    assert_unit_vector(vectorizer.embed_image(encode(im.convert("CMYK"), "JPEG")))


def test_16_bit_grey_matches_its_8_bit_version(vectorizer, images) -> None:
    grey8 = np.asarray(images[11].convert("L"), dtype=np.uint16)
    deep = Image.fromarray(grey8 * 257)  # the same picture on the full 16-bit range
    assert deep.mode.startswith("I;16")
    data = encode(deep)
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    vec = vectorizer.embed_image(data)
    assert_unit_vector(vec)
    expected = vectorizer.embed_image(encode(Image.fromarray(grey8.astype(np.uint8))))
    assert cos(vec, expected) > 0.999
    # 32-bit integer and float greyscale (TIFF) decode too.
    assert cos(vectorizer.embed_image(encode(deep.convert("I"), "TIFF")), expected) > 0.999
    floats = Image.fromarray((grey8 / 255.0).astype(np.float32), "F")
    assert cos(vectorizer.embed_image(encode(floats, "TIFF")), expected) > 0.999


def test_animated_gif_uses_its_first_frame(vectorizer, images, index) -> None:
    frames = [images[13], images[14], images[15]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert cosine_top_k(index, vectorizer.embed_image(data), 1)[0][0] == 13


def test_exif_orientation_is_applied(vectorizer, images) -> None:
    im = images[17]
    upright = vectorizer.embed_image(encode(im, "JPEG", quality=92))
    stored = im.transpose(Image.Transpose.ROTATE_90)  # the sensor's view, turned 90 degrees
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    tagged = vectorizer.embed_image(encode(stored, "JPEG", quality=92, exif=exif.tobytes()))
    untagged = vectorizer.embed_image(encode(stored, "JPEG", quality=92))
    assert cos(tagged, upright) > 0.98
    assert cos(tagged, upright) > cos(untagged, upright) + 0.05


def test_large_jpeg_takes_the_draft_path_and_still_matches(vectorizer, images) -> None:
    im = images[19]
    big = im.resize((im.width * 8, im.height * 8), Image.Resampling.BICUBIC)
    small = vectorizer.embed_image(encode(im, "JPEG", quality=90))
    assert cos(vectorizer.embed_image(encode(big, "JPEG", quality=90)), small) > 0.97


# --------------------------------------------------------------------------------------------
# What is not an image


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A 1 x 1 PNG whose header claims ``width`` x ``height`` (a decompression-bomb shape)."""
    data = bytearray(encode(Image.new("L", (1, 1))))
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), then width, height
    assert data[ihdr + 4 : ihdr + 8] == b"IHDR"
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13]))
    data[ihdr + 8 + 13 : ihdr + 8 + 17] = struct.pack(">I", crc)
    return bytes(data)


def _not_images(images: list[Image.Image]) -> dict[str, bytes]:
    jpeg = encode(images[0], "JPEG", quality=90)
    png = encode(images[0])
    return {
        "zero bytes": b"",
        "garbage": np.random.default_rng(7).bytes(4096),
        "text file": b"index_name,category\nproducts,shoes\n" * 20,
        "html error page": b"<html><body><h1>403 Forbidden</h1></body></html>",
        "truncated jpeg": jpeg[: len(jpeg) // 2],
        "jpeg header only": jpeg[:200],
        "truncated png": png[: len(png) // 2],
        # 900 MP: over Pillow's own hard limit (~179 MP), which must surface as our error too.
        "decompression bomb": _png_with_declared_size(30_000, 30_000),
    }


@pytest.mark.parametrize(
    "case",
    [
        "zero bytes",
        "garbage",
        "text file",
        "html error page",
        "truncated jpeg",
        "jpeg header only",
        "truncated png",
        "decompression bomb",
    ],
)
def test_not_an_image_is_a_decode_error(vectorizer, images, case: str) -> None:
    with pytest.raises(ImageDecodeError) as caught:
        vectorizer.embed_image(_not_images(images)[case])
    assert isinstance(caught.value, ValueError)
    if case == "decompression bomb":
        assert "decompression bomb" in str(caught.value)


def test_pixel_limit_is_below_pillows_own(vectorizer) -> None:
    # 60 MP is under Pillow's default bomb threshold (~89 MP) but over ours (50 MP).
    with pytest.raises(ImageDecodeError, match="pixel limit.*decompression bomb"):
        vectorizer.embed_image(_png_with_declared_size(10_000, 6_000))


# --------------------------------------------------------------------------------------------
# cosine_top_k


def test_top_k_agrees_with_a_full_sort() -> None:
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(500, DIMENSION)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    query = rng.normal(size=DIMENSION).astype(np.float32)
    indices, scores = cosine_top_k(matrix, query, 10)
    expected = matrix @ (query / np.linalg.norm(query))
    assert indices.dtype == np.int64
    assert scores.dtype == np.float32
    assert list(indices) == list(np.argsort(-expected, kind="stable")[:10])
    np.testing.assert_allclose(scores, expected[indices], atol=1e-5)
    assert np.all(np.diff(scores) <= 0)


def test_top_k_breaks_ties_by_lower_index() -> None:
    base = np.eye(4, DIMENSION, dtype=np.float32)
    # Rows 1, 3, 4, 6 and 7 are the same vector; whatever argpartition picks, the lowest win.
    matrix = base[[0, 1, 2, 1, 1, 3, 1, 1]]
    indices, scores = cosine_top_k(matrix, base[1], 3)
    assert list(indices) == [1, 3, 4]
    assert list(scores) == [1.0, 1.0, 1.0]
    indices, _ = cosine_top_k(matrix, base[1], 8)
    assert list(indices) == [1, 3, 4, 6, 7, 0, 2, 5]


def test_top_k_edge_cases() -> None:
    matrix = np.array([[3.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    indices, scores = cosine_top_k(matrix, np.array([2.0, 0.0], dtype=np.float32), 10)
    assert list(indices) == [0, 2, 1]  # k > N gives N; unnormalised rows; zero row scores 0
    np.testing.assert_allclose(scores, [1.0, np.sqrt(0.5), 0.0], atol=1e-6)
    indices, scores = cosine_top_k(matrix, np.array([1.0, 0.0], dtype=np.float32), 0)
    assert indices.shape == (0,) and scores.shape == (0,)
    with pytest.raises(ValueError):
        cosine_top_k(matrix, np.zeros(3, dtype=np.float32), 1)
    with pytest.raises(ValueError):
        cosine_top_k(matrix, np.zeros(2, dtype=np.float32), -1)
    empty_indices, _ = cosine_top_k(np.zeros((0, 2), np.float32), np.ones(2, np.float32), 5)
    assert empty_indices.shape == (0,)

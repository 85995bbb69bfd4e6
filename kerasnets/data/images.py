"""Image files as MNIST digits: decoded safely, then prepared the way MNIST was made.

Any PNG, JPEG, GIF or BMP (colour or grey, 8 or 16 bits, palette, with or
without alpha, up to MAX_PIXELS: the size is read from the file header before
decoding) is decoded with Pillow and brought to MNIST's form the way the dataset
itself was made: white digit on black (inverted when the image is dark on light),
the digit's bounding box scaled to fit 20x20 with its aspect ratio kept (an
antialiased bilinear resize), then placed in a 28x28 field so that its centre of
mass is at the centre.

Pillow and numpy rather than tf.io and tf.image, so that kerasnets-predict and
kerasnets-serve on LiteRT or ONNX never load TensorFlow; docs/serving.md has the
two compared pixel by pixel on every format (tests/data/test_images.py holds the
TensorFlow path as the reference).

Used by kerasnets-predict (files) and kerasnets-serve's /draw (a drawing's PNG).
"""

from __future__ import annotations

import io
import os
import struct

import numpy as np

from kerasnets.errors import KerasnetsError

BOX = 20       # MNIST digits fit a 20x20 box ...
FIELD = 28     # ... in a 28x28 field with their centre of mass at pixel (14, 14)
CENTRE = 14.0  # (MNIST's own centring: its training images' mean centre of mass)
INK = 0.2      # pixels above this fraction of the brightest one count as the digit
MAX_PIXELS = 40_000_000   # larger images are refused before decoding (a 40 MP grey image
                          # decodes to 160 MB of float32; a forged header could claim far more)
JPEG_HEADER_BYTES = 1 << 16  # where a JPEG's frame header is looked for (after its metadata)
FORMATS = ("PNG", "JPEG", "GIF", "BMP")  # what Pillow is allowed to decode
GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float32)  # ITU-R 601 luma of R, G, B


class ImageError(KerasnetsError, ValueError):
    """An image file that cannot be read as a digit."""


def image_size(header: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, GIF, BMP or JPEG file, without decoding.

    None when the format is not recognised (the decoder then says so). For JPEG the
    dimensions are in the first frame header (SOFn), after any metadata segments.
    """
    if header.startswith(b"\x89PNG\r\n\x1a\n") and header[12:16] == b"IHDR":
        return struct.unpack(">II", header[16:24])
    if header[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", header[6:10])
    if header.startswith(b"BM") and len(header) >= 26:
        width, height = struct.unpack("<ii", header[18:26])
        return abs(width), abs(height)
    if header.startswith(b"\xff\xd8"):
        return _jpeg_size(header)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        at += 2 + length
    return None


def load_image(path: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The file as float32 grey pixels 0..255, shape [height, width] (alpha composited on white).

    The dimensions are read from the file's header first: an image of more than
    `max_pixels` pixels is refused before anything is decoded (a small file can
    claim gigapixels and would exhaust memory when decoded).
    """
    if os.path.isdir(path):
        raise ImageError("is a directory, not an image file")
    if not os.path.exists(path):
        raise ImageError("no such file")
    try:
        with open(path, "rb") as f:
            header = f.read(JPEG_HEADER_BYTES)
            _check_size(image_size(header), max_pixels)
            raw = header + f.read()
    except OSError as e:
        raise ImageError(f"cannot read ({e.strerror or type(e).__name__})") from None
    return decode_image(raw, max_pixels)


def decode_image(raw: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes as float32 grey pixels 0..255, shape [height, width] (alpha
    composited on white); the size limit is checked from the header before decoding."""
    from PIL import Image

    _check_size(image_size(raw[:JPEG_HEADER_BYTES]), max_pixels)
    try:
        with Image.open(io.BytesIO(raw), formats=FORMATS) as image:
            _check_size(image.size, max_pixels)  # a header image_size does not read
            pixels = _unit_pixels(image)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        raise ImageError("cannot decode: not a PNG, JPEG, GIF or BMP image, or corrupt") from None
    if pixels.shape[-1] in (2, 4):  # with alpha: composite onto a white page
        alpha = pixels[..., -1:]
        pixels = pixels[..., :-1] * alpha + (1.0 - alpha)
    grey = pixels @ GREY_WEIGHTS if pixels.shape[-1] == 3 else pixels[..., 0]
    return grey * np.float32(255.0)


def _unit_pixels(image) -> np.ndarray:
    """The decoded (first) frame as float32 0..1, [height, width, channels]: grey, grey and
    alpha, RGB or RGBA, at its own bit depth (16-bit grey keeps its 65,536 levels)."""
    if image.mode.startswith("I;16") or image.mode == "I":
        return (np.asarray(image, np.float32) * np.float32(1 / 65535))[..., None]
    if image.mode not in ("L", "LA", "RGB", "RGBA"):  # palette, bilevel, CMYK, ...
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    pixels = np.asarray(image, np.float32) * np.float32(1 / 255)  # as tf.image's conversion
    return pixels if pixels.ndim == 3 else pixels[..., None]


def _check_size(size: tuple[int, int] | None, max_pixels: int) -> None:
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(f"{size[0]}x{size[1]} pixels is over the limit of {max_pixels:,} "
                         f"({max_pixels / 1e6:g} megapixels); scale the image down")


def to_mnist(grey: np.ndarray) -> np.ndarray:
    """MNIST-style uint8 [28, 28]: white on black, fitted into 20x20, centred by mass."""
    if np.median(_border(grey)) > 127.5:   # dark digit on a light page
        grey = 255.0 - grey
    ink = np.clip(grey - np.median(_border(grey)), 0, None)   # background to 0
    if ink.max() <= 0:
        raise ImageError("no digit found: the image is blank")
    rows, cols = np.nonzero(ink > INK * ink.max())
    digit = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = BOX / max(digit.shape)
    size = (max(1, round(digit.shape[0] * scale)), max(1, round(digit.shape[1] * scale)))
    digit = resize(digit, size)
    digit = np.clip(digit * (255.0 / max(digit.max(), 1e-6)), 0, 255)
    total = digit.sum()
    cy = (digit.sum(axis=1) * np.arange(size[0])).sum() / total
    cx = (digit.sum(axis=0) * np.arange(size[1])).sum() / total
    top = int(np.clip(round(CENTRE - cy), 0, FIELD - size[0]))
    left = int(np.clip(round(CENTRE - cx), 0, FIELD - size[1]))
    field = np.zeros((FIELD, FIELD), np.float32)
    field[top:top + size[0], left:left + size[1]] = digit
    return np.round(field).astype(np.uint8)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 [height, width] resized to `size` (height, width), bilinear; when shrinking,
    the filter widens with the scale (antialiased), as tf.image.resize(antialias=True)."""
    from PIL import Image

    resized = Image.fromarray(np.ascontiguousarray(image, np.float32)).resize(
        (size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, np.float32)


def _border(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])

"""kerasnets.data.images (Pillow and numpy) against the tf.io / tf.image path it replaced.

`tf_decode_image` and `tf_to_mnist` below are that path as it was (the reference). Every
accepted format is written with Pillow from real MNIST test digits drawn as ink on
paper; both paths decode and prepare each file, and a trained model classifies both
results. The largest differences per format are printed (pytest -s) and bounded:

  .venv/bin/python -m pytest tests/data/test_images.py -s -k per_format
"""

import gzip
import importlib.util
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from kerasnets.data import images
from PIL import Image

import kerasnets

DIGITS = 100  # MNIST test digits drawn per format


def tf_decode_image(raw: bytes) -> np.ndarray:
    """The reference: decode_image as it was, with tf.io (size checks left out)."""
    try:
        image = tf.io.decode_image(raw, expand_animations=False, dtype=tf.float32)
    except (tf.errors.InvalidArgumentError, ValueError):
        raise images.ImageError("cannot decode: not a PNG, JPEG, GIF or BMP image, or corrupt") \
            from None
    if image.shape[-1] in (2, 4):
        alpha = image[..., -1:]
        image = image[..., :-1] * alpha + (1.0 - alpha)
    if image.shape[-1] == 3:
        image = tf.image.rgb_to_grayscale(image)
    return image[..., 0].numpy() * 255.0


def tf_to_mnist(grey: np.ndarray) -> np.ndarray:
    """The reference: to_mnist as it was, resizing with tf.image.resize(antialias=True)."""
    def border(image):
        return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    if np.median(border(grey)) > 127.5:
        grey = 255.0 - grey
    ink = np.clip(grey - np.median(border(grey)), 0, None)
    if ink.max() <= 0:
        raise images.ImageError("no digit found: the image is blank")
    rows, cols = np.nonzero(ink > images.INK * ink.max())
    digit = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = images.BOX / max(digit.shape)
    size = (max(1, round(digit.shape[0] * scale)), max(1, round(digit.shape[1] * scale)))
    digit = tf.image.resize(digit[..., None], size, antialias=True)[..., 0].numpy()
    digit = np.clip(digit * (255.0 / max(digit.max(), 1e-6)), 0, 255)
    total = digit.sum()
    cy = (digit.sum(axis=1) * np.arange(size[0])).sum() / total
    cx = (digit.sum(axis=0) * np.arange(size[1])).sum() / total
    top = int(np.clip(round(images.CENTRE - cy), 0, images.FIELD - size[0]))
    left = int(np.clip(round(images.CENTRE - cx), 0, images.FIELD - size[1]))
    field = np.zeros((images.FIELD, images.FIELD), np.float32)
    field[top:top + size[0], left:left + size[1]] = digit
    return np.round(field).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str, mode: str | None = None, **options) -> bytes:
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, fmt, **options)
    return buffer.getvalue()


def drawn(digit: np.ndarray) -> dict[str, bytes]:
    """One MNIST digit as a 84x84 page (dark ink on light paper) in every accepted format."""
    page = np.asarray(Image.fromarray(255 - digit).resize((84, 84), Image.Resampling.BICUBIC))
    ink = (255 - page).astype(np.float32) / 255
    rgb = np.stack([245 - 200 * ink, 240 - 190 * ink, 220 - 60 * ink], -1).astype(np.uint8)
    rgba = np.zeros(page.shape + (4,), np.uint8)  # blue ink on a transparent sheet
    rgba[..., 2], rgba[..., 3] = 120, (255 * ink).astype(np.uint8)
    return {"PNG grey": encode(page, "PNG"), "PNG RGB": encode(rgb, "PNG"),
            "PNG RGBA": encode(rgba, "PNG"), "PNG palette": encode(rgb, "PNG", "P"),
            "PNG 16-bit grey": encode(page.astype(np.uint16) * 257, "PNG"),
            "JPEG": encode(rgb, "JPEG", quality=90), "JPEG grey": encode(page, "JPEG", quality=90),
            "GIF": encode(rgb, "GIF"), "BMP": encode(rgb, "BMP"), "BMP grey": encode(page, "BMP")}


# Largest |difference| allowed per format, in grey levels 0..255, of the decoded image.
# Lossless formats differ by float32 rounding only; JPEG decoders differ in their inverse
# DCT (TensorFlow's default is libjpeg's fast integer one, Pillow's the accurate one).
DECODE_BOUND = {"JPEG": 8.0, "JPEG grey": 8.0}
LOSSLESS_BOUND = 1e-3
TORN = 0.01  # a model whose two most likely classes are closer than this is torn


@pytest.fixture(scope="module")
def model(smoke_run):
    return kerasnets.load_model(str(smoke_run[0] / "model.keras"))


@pytest.fixture(scope="module")
def per_format(real_mnist, model):
    """{format: figures} over DIGITS test digits drawn in each format."""
    (_, _), (x_test, y_test) = real_mnist[0]
    files = [drawn(digit) for digit in x_test[:DIGITS]]
    table = {}
    for fmt in files[0]:
        old = [tf_decode_image(f[fmt]) for f in files]
        new = [images.decode_image(f[fmt]) for f in files]
        old_prepared = [tf_to_mnist(g) for g in old]
        new_prepared = [images.to_mnist(g) for g in new]
        same_input = [images.to_mnist(g) for g in old]  # the preparation alone, on one input
        old_p = model.predict(np.stack(old_prepared)[..., None], verbose=0)
        new_p = model.predict(np.stack(new_prepared)[..., None], verbose=0)
        old_classes, new_classes = old_p.argmax(1), new_p.argmax(1)
        top_two = np.sort(old_p, axis=1)[:, -2:]
        differ = np.nonzero(old_classes != new_classes)[0]
        table[fmt] = dict(
            torn_differing=int(sum(top_two[i, 1] - top_two[i, 0] < TORN for i in differ)),
            decoded=max(float(np.abs(a - b).max()) for a, b in zip(old, new)),
            prepare_only=max(int(np.abs(a.astype(int) - b).max())
                             for a, b in zip(old_prepared, same_input)),
            prepared=max(int(np.abs(a.astype(int) - b).max())
                         for a, b in zip(old_prepared, new_prepared)),
            prepared_equal=sum(np.array_equal(a, b) for a, b in zip(old_prepared, new_prepared)),
            same_class=int(np.sum(old_classes == new_classes)),
            old_accuracy=float(np.mean(old_classes == y_test[:DIGITS])),
            new_accuracy=float(np.mean(new_classes == y_test[:DIGITS])))
    print(f"\n{'format':<16} {'decoded':>9} {'prepare':>8} {'28x28':>6} {'equal':>6} "
          f"{'same class':>10} {'acc tf.io':>9} {'acc Pillow':>10}")
    for fmt, r in table.items():
        print(f"{fmt:<16} {r['decoded']:>9.2g} {r['prepare_only']:>8} {r['prepared']:>6} "
              f"{r['prepared_equal']:>6} {r['same_class']:>10} {r['old_accuracy']:>9.2%} "
              f"{r['new_accuracy']:>10.2%}")
    return table


@pytest.mark.parametrize("fmt", list(drawn(np.zeros((28, 28), np.uint8))))
def test_per_format_pixels_and_classes_match_the_tensorflow_path(per_format, fmt):
    r = per_format[fmt]
    assert r["decoded"] <= DECODE_BOUND.get(fmt, LOSSLESS_BOUND), r
    assert r["prepare_only"] <= 1, r     # the resize: Pillow's bilinear as tf.image's, antialiased
    if fmt not in DECODE_BOUND:          # lossless: the same 28x28 digit, within one level
        assert r["prepared"] <= 1 and r["prepared_equal"] >= DIGITS * 0.9, r
    if fmt not in DECODE_BOUND:
        assert r["same_class"] == DIGITS, r
        assert r["new_accuracy"] >= r["old_accuracy"], r
    else:  # JPEG's two decoders differ by a few levels: only a digit the model is torn on
        # (its two most likely classes within TORN) may tip, at most one in a hundred
        differing = DIGITS - r["same_class"]
        assert differing <= DIGITS // 100 and r["torn_differing"] == differing, r
        assert r["new_accuracy"] >= r["old_accuracy"] - differing / DIGITS, r


def uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """The UCI handwritten digits bundled with scikit-learn (1,797 8x8 images, 0..16, by 43
    writers who are not MNIST's): its data file only, scikit-learn is never imported."""
    spec = importlib.util.find_spec("sklearn")
    assert spec is not None, "scikit-learn's data file is installed by make (--no-deps)"
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    pixels = np.round(table[:, :64] * (255 / 16)).astype(np.uint8).reshape(-1, 8, 8)
    return pixels, table[:, 64].astype(int)


@pytest.mark.parametrize("source", ["mnist_test", "uci_handwriting"])
def test_digits_written_as_png_get_the_same_predictions(real_mnist, model, source):
    """The same class for every digit but those the model is torn on (its two most likely
    classes within TORN of each other, where a one-level pixel difference of the upscale
    may tip it), and no lower accuracy beyond those."""
    if source == "mnist_test":
        (_, _), (pixels, labels) = real_mnist[0]
        pixels, labels = pixels[:1000], labels[:1000]
    else:
        pixels, labels = uci_digits()
    assert len(pixels) >= 1000
    pngs = [encode(p, "PNG") for p in pixels]
    old = model.predict(np.stack([tf_to_mnist(tf_decode_image(png)) for png in pngs])[..., None],
                        verbose=0)
    new = model.predict(
        np.stack([images.to_mnist(images.decode_image(png)) for png in pngs])[..., None],
        verbose=0)
    differ = np.nonzero(old.argmax(1) != new.argmax(1))[0]
    top_two = np.sort(old, axis=1)[:, -2:]
    print(f"\n{source}: {len(pngs)} digits, accuracy tf.io {np.mean(old.argmax(1) == labels):.2%}, "
          f"Pillow {np.mean(new.argmax(1) == labels):.2%}, same class "
          f"{len(pngs) - len(differ)}")
    assert len(differ) <= len(pngs) // 200, differ
    assert all(top_two[i, 1] - top_two[i, 0] < TORN for i in differ), top_two[differ]
    assert np.sum(new.argmax(1) == labels) >= np.sum(old.argmax(1) == labels) - len(differ)
    assert np.mean(new.argmax(1) == labels) > (0.85 if source == "mnist_test" else 0.3)


@pytest.mark.parametrize("name, raw", [
    ("text", b"not an image"),
    ("empty", b""),
    ("truncated PNG", encode(np.full((40, 40), 200, np.uint8), "PNG")[:60]),
    ("truncated JPEG", encode(np.full((40, 40, 3), 200, np.uint8), "JPEG")[:200]),
    ("WebP", encode(np.full((40, 40, 3), 200, np.uint8), "WEBP")),
    ("TIFF", encode(np.full((40, 40, 3), 200, np.uint8), "TIFF")),
])
def test_what_neither_path_reads_gets_the_same_error_line(name, raw):
    with pytest.raises(images.ImageError) as old:
        tf_decode_image(raw)
    with pytest.raises(images.ImageError) as new:
        images.decode_image(raw)
    assert str(new.value) == str(old.value) == (
        "cannot decode: not a PNG, JPEG, GIF or BMP image, or corrupt")


def test_a_transparent_gif_is_composited_on_white_unlike_tf_io():
    """tf.io ignored a GIF's transparent colour (its pixels came out black); alpha on white
    is what every other format gets, so a digit on a transparent GIF reads as on paper."""
    sheet = np.zeros((40, 40, 3), np.uint8)
    sheet[5:35, 18:22] = 30          # a dark "1" (51 in the GIF's palette) on transparent black
    gif = Image.fromarray(sheet).convert("P")
    buffer = io.BytesIO()
    gif.save(buffer, "GIF", transparency=gif.getpixel((0, 0)))
    grey = images.decode_image(buffer.getvalue())
    assert grey[0, 0] == pytest.approx(255, abs=0.05) and grey[20, 20] < 60  # weights: 0.9999
    prepared = images.to_mnist(grey)
    assert prepared.max() == 255 and prepared[:, :8].max() == 0      # white stroke, centred

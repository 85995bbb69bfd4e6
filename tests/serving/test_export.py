"""Export for serving (SavedModel versions), import as a Keras model, and kerasnets-predict."""

import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, error_lines, run_module
from kerasnets.data import images
from kerasnets.models import convnets
from kerasnets.serving import export

import kerasnets

PROB_ATOL = 1e-5  # SavedModel vs .keras probabilities (same float32 graph, different runtime)


@pytest.fixture(scope="module")
def smoke_model(smoke_run):
    model_dir, _, _ = smoke_run
    return model_dir, kerasnets.load_model(str(model_dir / "model.keras"))


@pytest.fixture(scope="module")
def exported(smoke_model, tmp_path_factory):
    """The smoke model exported twice into one base: versions 1 and 2."""
    base = tmp_path_factory.mktemp("savedmodels") / "mnist"
    _, model = smoke_model
    first = export.export_version(model, str(base))
    second = export.export_version(model, str(base))
    return base, first, second


@pytest.fixture(scope="module")
def test_images(real_mnist):
    (_, _), (x_test, y_test) = real_mnist[0]
    return x_test[:1000], y_test[:1000]


def keras_probabilities(model, images):
    return model.predict(images[..., None], batch_size=500, verbose=0)


# --- SavedModel -----------------------------------------------------------------------

def test_two_exports_are_versions_1_and_2_and_equal_the_keras_model(exported, smoke_model,
                                                                    test_images):
    base, first, second = exported
    assert (first, second) == (str(base / "1"), str(base / "2"))
    assert sorted(os.listdir(base)) == ["1", "2"]  # no scratch directories left behind
    images, labels = test_images
    expected = keras_probabilities(smoke_model[1], images)
    for version in (first, second):
        serve = tf.saved_model.load(version).signatures["serving_default"]
        out = serve(images=tf.constant(images))
        assert out["classes"].dtype == tf.int64 and out["classes"].shape == (1000,)
        assert out["probabilities"].dtype == tf.float32 and out["probabilities"].shape == (1000, 10)
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=PROB_ATOL)
        np.testing.assert_array_equal(out["classes"].numpy(), expected.argmax(axis=1))
    assert np.mean(expected.argmax(axis=1) == labels) > 0.8  # trained (the smoke run: 0.925; chance 0.1)


def test_the_signature_takes_any_batch_size(exported):
    serve = tf.saved_model.load(exported[1]).signatures["serving_default"]
    for n in (1, 3, 257):
        assert serve(images=tf.zeros([n, 28, 28], tf.uint8))["classes"].shape == (n,)


@pytest.mark.parametrize("bad", [
    tf.zeros([2, 28, 28], tf.float32),     # floats: the signature takes raw uint8 pixels
    tf.zeros([2, 28, 28, 1], tf.uint8),    # a channel axis
    tf.zeros([2, 32, 32], tf.uint8),       # wrong size
])
def test_the_signature_rejects_wrong_dtype_or_shape(exported, bad):
    serve = tf.saved_model.load(exported[1]).signatures["serving_default"]
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)) as e:
        serve(images=bad)
    assert re.search(r"Shape of tensor images \[2,(28,28,1|32,32)\] is not compatible with "
                     r"expected shape \[\?,28,28\]|expected to be a uint8 tensor but is a float tensor",
                     str(e.value)), e.value


def _cli(*args):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run([cli, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_saved_model_cli_show_lists_the_serving_signature(exported):
    shown = _cli("show", "--dir", exported[1], "--all")
    signature = shown[shown.index("signature_def['serving_default']"):]
    for fragment in ("inputs['images'] tensor_info:\n        dtype: DT_UINT8\n"
                     "        shape: (-1, 28, 28)",
                     "outputs['classes'] tensor_info:\n        dtype: DT_INT64\n        shape: (-1)",
                     "outputs['probabilities'] tensor_info:\n        dtype: DT_FLOAT\n"
                     "        shape: (-1, 10)",
                     "Method name is: tensorflow/serving/predict"):
        assert fragment in signature


def test_saved_model_cli_run_predicts_like_keras(exported, smoke_model, test_images, tmp_path):
    images = test_images[0][:4]
    np.save(tmp_path / "four.npy", images)
    _cli("run", "--dir", exported[1], "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"images={tmp_path / 'four.npy'}", "--outdir", str(tmp_path / "out"))
    expected = keras_probabilities(smoke_model[1], images)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "probabilities.npy"), expected,
                               atol=PROB_ATOL)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "classes.npy"),
                                  expected.argmax(axis=1))


def test_export_never_overwrites_a_version(exported, tmp_path):
    base, first, _ = exported
    before = sorted(os.listdir(os.path.join(first, "variables")))
    with pytest.raises(FileExistsError):
        export.export_version(convnets.build_model("default"), str(base), version=1)
    assert sorted(os.listdir(os.path.join(first, "variables"))) == before


def test_export_cli_refuses_bad_flags_with_one_line(smoke_run, exported, tmp_path):
    model_dir = smoke_run[0]
    cases = [
        ([f"--model_dir={tmp_path}", f"--export_base={tmp_path / 'x'}"],
         "--model_dir must be a kerasnets-train run directory holding model.keras"),
        ([f"--model_dir={model_dir}", f"--export_base={model_dir / 'results.json'}"],
         "results.json exists and is not a directory"),
        ([f"--model_dir={model_dir}", f"--export_base={exported[1]}"], "is itself a SavedModel"),
        ([f"--model_dir={model_dir}", f"--export_base={exported[0]}", "--version=2"],
         "--version: .*/2 exists; versions are never overwritten"),
    ]
    for args, message in cases:
        proc = run_module("export", *args)
        lines = error_lines(proc.stderr)
        assert proc.returncode == 1 and lines[0].startswith("FATAL Flags parsing error")
        assert re.search(message, lines[0]), lines[0]
    assert sorted(os.listdir(exported[0])) == ["1", "2"] and not os.path.exists(tmp_path / "x")


def test_a_killed_export_leaves_no_version_and_the_next_one_is_whole(smoke_run, tmp_path):
    base = tmp_path / "mnist"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerasnets.cli.export", f"--model_dir={smoke_run[0]}",
         f"--export_base={base}"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (base.is_dir() and any(n.startswith(".export-tmp-") for n in os.listdir(base))):
            assert proc.poll() is None and time.time() < deadline, "export never started"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)  # while the SavedModel is being written aside
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert export.versions(str(base)) == []  # a server watching base sees nothing to load
    done = run_module("export", f"--model_dir={smoke_run[0]}", f"--export_base={base}")
    assert done.returncode == 0, done.stderr
    assert export.versions(str(base)) == [1]
    assert "serving_default" in tf.saved_model.load(str(base / "1")).signatures


# --- import as a Keras model ----------------------------------------------------------

def test_load_model_is_safe_and_takes_raw_images(smoke_model, test_images):
    model_dir, model = smoke_model
    assert model.input_shape == (None, 28, 28, 1)
    raw = test_images[0][:8, :, :, None]  # uint8 0..255, as saved
    np.testing.assert_allclose(model(raw, training=False).numpy().sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="not a .keras file"):
        kerasnets.load_model(str(model_dir / "results.json"))
    with pytest.raises(FileNotFoundError):
        kerasnets.load_model(str(model_dir / "missing.keras"))


def test_tfsmlayer_uses_the_savedmodel_inside_keras(exported, smoke_model, test_images):
    images = test_images[0][:64]
    layer = keras.layers.TFSMLayer(exported[1], call_endpoint="serving_default")
    inputs = keras.Input((28, 28), dtype="uint8", name="images")
    wrapped = keras.Model(inputs, layer(inputs)["probabilities"])
    np.testing.assert_allclose(wrapped.predict(images, verbose=0),
                               keras_probabilities(smoke_model[1], images), atol=PROB_ATOL)


def test_fine_tuning_the_keras_model_on_new_data(smoke_run, real_mnist, tmp_path):
    (x_train, y_train), _ = real_mnist[0]
    new_x, new_y = x_train[50000:51024, :, :, None], y_train[50000:51024]  # unseen by the smoke run
    model = kerasnets.load_model(str(smoke_run[0] / "model.keras"))
    # The saved optimizer's cosine schedule ended at 0: fine-tune with a fresh optimizer.
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.evaluate(new_x, new_y, verbose=0, return_dict=True)["loss"]
    model.fit(new_x, new_y, epochs=2, batch_size=64, verbose=0)
    after = model.evaluate(new_x, new_y, verbose=0, return_dict=True)["loss"]
    assert after < before
    model.save(tmp_path / "tuned.keras")
    again = kerasnets.load_model(str(tmp_path / "tuned.keras"))
    np.testing.assert_allclose(again.predict(new_x[:16], verbose=0),
                               model.predict(new_x[:16], verbose=0), atol=1e-6)


# --- kerasnets-predict ----------------------------------------------------------------

def _write(path, pixels):
    encode = tf.io.encode_jpeg if str(path).endswith(".jpg") else tf.io.encode_png
    tf.io.write_file(str(path), encode(np.clip(pixels, 0, 255).astype(np.uint8)))


def _on_a_page(digit, scale=5, page=(200, 180), at=(20, 30), dark_on_light=True, colour=False):
    """An MNIST digit scaled up and drawn off-centre on a larger page."""
    big = tf.image.resize(digit[..., None].astype(np.float32), (28 * scale, 28 * scale)).numpy()
    canvas = np.zeros(page + (1,), np.float32)
    canvas[at[0]:at[0] + big.shape[0], at[1]:at[1] + big.shape[1]] = big
    if dark_on_light:
        canvas = 255.0 - canvas
    return np.repeat(canvas, 3, axis=2) if colour else canvas


def test_to_mnist_inverts_fits_20x20_and_centres_by_mass(test_images):
    digit = test_images[0][0]
    out = images.to_mnist(_on_a_page(digit)[..., 0])
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    rows, cols = np.nonzero(out > 0.2 * 255)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)
    mass = out.astype(np.float64)
    cy = (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum()
    cx = (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum()
    assert abs(cy - 14.0) <= 0.5 and abs(cx - 14.0) <= 0.5  # MNIST's own centre of mass
    # it looks like the MNIST original (which was made the same way); measured 0.98
    assert np.corrcoef(out.ravel(), digit.ravel())[0, 1] > 0.95
    with pytest.raises(images.ImageError, match="blank"):
        images.to_mnist(np.full((40, 40), 255.0))


def _drawn_one(size=(90, 70)):
    """A hand-drawn-like "1": a thick, slightly slanted dark stroke on a light page."""
    page = np.full(size + (1,), 235.0)
    for row in range(12, 80):
        centre = 38 - (row - 12) * 0.12
        page[row, int(centre) - 4:int(centre) + 4] = 20.0
    return page


def _confident_digits(model, images, labels, n=2):
    """The n correctly classified test digits (of the first 200) the model is surest of."""
    probs = keras_probabilities(model, images[:200])
    correct = [i for i in range(200) if probs[i].argmax() == labels[i]]
    return sorted(correct, key=lambda i: -probs[i].max())[:n]


def test_predict_cli_on_png_jpeg_inverted_and_corrupt_files(exported, smoke_model, test_images,
                                                            tmp_path):
    images, labels = test_images
    a, b = _confident_digits(smoke_model[1], images, labels)
    files = {
        "dark_on_light.png": (_on_a_page(images[a]), labels[a]),
        "colour.jpg": (_on_a_page(images[b], scale=4, at=(5, 60), colour=True), labels[b]),
        "white_on_black.png": (images[a][..., None], labels[a]),
        "drawn_one.png": (_drawn_one(), 1),
    }
    for name, (pixels, _) in files.items():
        _write(tmp_path / name, pixels)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    args = [str(tmp_path / n) for n in ("dark_on_light.png", "corrupt.png", "colour.jpg",
                                        "missing.png", "white_on_black.png", "drawn_one.png")]
    for model in (str(exported[0]), str(smoke_model[0] / "model.keras")):
        proc = run_module("predict", f"--model_path={model}", *args)
        assert proc.returncode == 1  # two files failed
        out = proc.stdout.splitlines()
        assert [line.split(":")[0] for line in out] == [args[0], args[2], args[4], args[5]]
        for line, name in zip(out, ("dark_on_light.png", "colour.jpg", "white_on_black.png",
                                    "drawn_one.png")):
            digit, p = line.split(": ")[1].split(" (p=")
            assert int(digit) == files[name][1] and 0.5 < float(p.rstrip(")")) <= 1.0, line
        errors = error_lines(proc.stderr)
        assert errors == [
            f"kerasnets-predict: error: {args[1]}: cannot decode: not a PNG, JPEG, GIF or BMP "
            "image, or corrupt",
            f"kerasnets-predict: error: {args[3]}: no such file"]


def test_predict_top_k_table_and_all_good_exit_code(exported, test_images, tmp_path):
    _write(tmp_path / "d.png", test_images[0][0][..., None])
    proc = run_module("predict", f"--model_path={exported[1]}", "--top_k=3", str(tmp_path / "d.png"))
    assert proc.returncode == 0, proc.stderr
    header, line = proc.stdout.splitlines()
    assert header == "file: digit:probability for the 3 most likely digits"
    ranked = [pair.split(":") for pair in line.split(": ", 1)[1].split()]
    probs = [float(p) for _, p in ranked]
    assert len(ranked) == 3 and probs == sorted(probs, reverse=True)
    assert len({d for d, _ in ranked}) == 3


def test_predict_refuses_a_model_that_is_not_one(tmp_path):
    (tmp_path / "m.txt").write_text("x")
    for model, message in ((tmp_path / "m.txt", "is a file but not a .keras model"),
                           (tmp_path, "holds neither saved_model.pb nor numbered SavedModel"),
                           (tmp_path / "nope", "does not exist")):
        proc = run_module("predict", f"--model_path={model}", "x.png")
        assert proc.returncode == 1 and message in error_lines(proc.stderr)[0]
    (tmp_path / "broken.keras").write_text("not a zip")
    proc = run_module("predict", f"--model_path={tmp_path / 'broken.keras'}", "x.png")
    assert proc.returncode == 1
    assert error_lines(proc.stderr)[0].startswith(
        f"kerasnets-predict: error: --model_path: cannot load {tmp_path / 'broken.keras'}: ")


def _constant_model(digit, p):
    """A tiny MNIST-shaped model that ignores its image: probability `p` for `digit`, the
    rest shared equally by the other nine (zero kernel; the bias is the log-probabilities)."""
    logits = np.full(10, np.log((1 - p) / 9), np.float32)
    logits[digit] = np.log(p)
    return keras.Sequential([
        keras.Input((28, 28)), keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax", kernel_initializer="zeros",
                           bias_initializer=keras.initializers.Constant(logits))])


def test_predict_on_an_export_base_uses_its_newest_version(test_images, tmp_path):
    base = tmp_path / "mnist"
    for digit, p in ((3, 0.6), (7, 0.9)):  # version 1, then version 2
        export.export_version(_constant_model(digit, p), str(base), formats=("saved_model",))
    assert export.latest_version_dir(str(base)) == str(base / "2")
    _write(tmp_path / "d.png", test_images[0][0][..., None])
    proc = run_module("predict", f"--model_path={base}", str(tmp_path / "d.png"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == f"{tmp_path / 'd.png'}: 7 (p=0.9000)\n"  # version 1 says 3 (p=0.6000)


def test_latest_version_dir_is_the_highest_number_not_the_last_name(tmp_path):
    assert export.latest_version_dir(str(tmp_path / "missing")) is None
    assert export.latest_version_dir(str(tmp_path)) is None
    for name in ("1", "9", "10", "2", "abc", ".export-tmp-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "11").write_text("a file, not a version")
    assert export.versions(str(tmp_path)) == [1, 2, 9, 10]
    assert export.latest_version_dir(str(tmp_path)) == str(tmp_path / "10")


# --- models that are not MNIST models --------------------------------------------------

FOREIGN_LINE = ("is not an MNIST model: its input is (batch, 32, 32, 3) and its output "
                "(batch, 5); kerasnets needs input (batch, 28, 28, 1) or (batch, 28, 28) and "
                "output (batch, 10)")


@pytest.fixture(scope="module")
def foreign_model_dir(tmp_path_factory):
    """A run directory whose model.keras takes 32x32 colour images and outputs 5 classes."""
    model_dir = tmp_path_factory.mktemp("foreign")
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(5, activation="softmax")]).save(model_dir / "model.keras")
    return model_dir


def test_load_model_refuses_a_foreign_model_in_one_line(foreign_model_dir):
    path = str(foreign_model_dir / "model.keras")
    with pytest.raises(convnets.NotAnMnistModelError) as e:
        kerasnets.load_model(path)
    assert str(e.value) == f"{path} {FOREIGN_LINE}"


def test_export_and_predict_refuse_a_foreign_model_and_write_nothing(foreign_model_dir, tmp_path):
    base = tmp_path / "savedmodels"
    path = foreign_model_dir / "model.keras"
    proc = run_module("export", f"--model_dir={foreign_model_dir}", f"--export_base={base}")
    assert proc.returncode == 1 and proc.stdout == ""
    assert error_lines(proc.stderr) == [f"kerasnets-export: error: {path} {FOREIGN_LINE}"]
    assert not base.exists()
    with pytest.raises(convnets.NotAnMnistModelError):  # the API refuses before writing, too
        export.export_version(keras.saving.load_model(path), str(base))
    assert not base.exists()
    proc = run_module("predict", f"--model_path={path}", "digit.png")
    assert proc.returncode == 1 and proc.stdout == ""
    assert error_lines(proc.stderr) == [f"kerasnets-predict: error: --model_path: {path} {FOREIGN_LINE}"]


def test_predict_refuses_a_savedmodel_without_the_mnist_signature(tmp_path):
    module = tf.Module()
    module.double = tf.function(lambda x: {"y": 2.0 * x},
                                input_signature=[tf.TensorSpec([None, 5], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path / "other" / "1"),
                        signatures={"serving_default": module.double})
    proc = run_module("predict", f"--model_path={tmp_path / 'other'}", "digit.png")
    assert proc.returncode == 1 and proc.stdout == ""
    assert error_lines(proc.stderr) == [
        f"kerasnets-predict: error: --model_path: {tmp_path / 'other' / '1'} is not a kerasnets "
        "SavedModel: serving_default takes x float32 [None, 5] and returns y float32 [None, 5]; "
        "needed: images uint8 [None, 28, 28] -> probabilities float32 [None, 10]"]


def test_a_model_without_a_channel_axis_is_an_mnist_model_too(test_images, tmp_path):
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    path = export.export_version(model, str(tmp_path / "base"))
    images = test_images[0][:5]
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), model.predict(images, verbose=0),
                               atol=PROB_ATOL)


# --- two exports at once ------------------------------------------------------------------

def test_two_exports_at_once_get_two_versions(smoke_run, tmp_path):
    base = tmp_path / "mnist"
    procs = [subprocess.Popen([sys.executable, "-m", "kerasnets.cli.export",
                               f"--model_dir={smoke_run[0]}", f"--export_base={base}"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    written = sorted(re.search(r" to (\S+) \(signature", out).group(1) for out, _ in outputs)
    assert written == [str(base / "1"), str(base / "2")]
    assert sorted(os.listdir(base)) == ["1", "2"]  # no scratch directory left
    for version in written:
        assert "serving_default" in tf.saved_model.load(version).signatures


# --- image files: a size limit read from the header -----------------------------------------

def _png_claiming(width, height):
    """A real PNG (valid chunks and CRCs) whose header claims width x height grey pixels;
    its data holds one row, so it is tiny (decoding it would need width*height bytes)."""
    import struct
    import zlib

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


def _jpeg_claiming(width, height):
    """A real JPEG from tf.io whose frame header (SOF0) is rewritten to width x height."""
    raw = bytearray(tf.io.encode_jpeg(tf.zeros([8, 8, 1], tf.uint8)).numpy())
    at = raw.index(b"\xff\xc0")
    raw[at + 5:at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(raw)


def test_image_size_is_read_from_the_header_of_each_format(tmp_path):
    from PIL import Image

    for encode, channels in ((tf.io.encode_png, 1), (tf.io.encode_jpeg, 3)):
        encoded = encode(tf.zeros([23, 37, channels], tf.uint8)).numpy()
        assert images.image_size(encoded) == (37, 23), encode
    for fmt in ("GIF", "BMP"):
        Image.new("L", (37, 23)).save(tmp_path / f"i.{fmt.lower()}", fmt)
        assert images.image_size((tmp_path / f"i.{fmt.lower()}").read_bytes()) == (37, 23), fmt
    assert images.image_size(_png_claiming(100_000, 100_000)) == (100_000, 100_000)
    assert images.image_size(_jpeg_claiming(65_000, 64_000)) == (65_000, 64_000)
    assert images.image_size(b"not an image") is None


# Runs a module as __main__ and prints its peak memory (kB) on stderr when it exits.
_WITH_PEAK_MEMORY = """
import atexit, resource, runpy, sys
atexit.register(lambda: print(f"maxrss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}",
                              file=sys.stderr))
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def test_predict_refuses_huge_images_before_decoding_and_directories(exported, test_images,
                                                                     tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))  # 10 gigapixels
    (tmp_path / "bomb.jpg").write_bytes(_jpeg_claiming(65_000, 64_000))
    (tmp_path / "folder.png").mkdir()
    _write(tmp_path / "ok.png", test_images[0][0][..., None])
    assert (tmp_path / "bomb.png").stat().st_size < 1000
    names = ["bomb.png", "bomb.jpg", "folder.png", "ok.png"]
    proc = subprocess.run(
        [sys.executable, "-c", _WITH_PEAK_MEMORY, "kerasnets.cli.predict", f"--model_path={exported[1]}",
         *[str(tmp_path / n) for n in names]], cwd=REPO, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].startswith(f"{tmp_path / 'ok.png'}: ")
    limit = "is over the limit of 40,000,000 (40 megapixels); scale the image down"
    assert error_lines(proc.stderr)[:3] == [
        f"kerasnets-predict: error: {tmp_path / 'bomb.png'}: 100000x100000 pixels {limit}",
        f"kerasnets-predict: error: {tmp_path / 'bomb.jpg'}: 65000x64000 pixels {limit}",
        f"kerasnets-predict: error: {tmp_path / 'folder.png'}: is a directory, not an image file"]
    # nothing was decoded: the whole process stays far below the 10 GB the PNG claims
    rss_kb = int(re.search(r"maxrss_kb=(\d+)", proc.stderr).group(1))
    assert rss_kb < 3_000_000, rss_kb


# --- docs/serving.md: the documented REST request goes through the real signature -------

def _json_blocks(markdown: str) -> list:
    import json
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", markdown, re.S)]


def tf_serving_row_predict(signature, body: dict) -> dict:
    """TensorFlow Serving's REST `:predict` in the row format, on a loaded signature: the
    "instances" JSON lists become one tensor of the input's dtype (integers in its range
    only), and each output's rows are returned as one object per instance."""
    (name, spec), = signature.structured_input_signature[1].items()
    values = np.asarray(body["instances"])
    assert values.dtype.kind in "iu" and values.min() >= 0 and values.max() <= 255
    outputs = signature(**{name: tf.constant(values, dtype=spec.dtype)})
    n = len(body["instances"])
    return {"predictions": [{k: v.numpy()[i].tolist() for k, v in sorted(outputs.items())}
                            for i in range(n)]}


def test_the_documented_rest_request_goes_through_the_signature(exported, smoke_model,
                                                                 test_images):
    with open(os.path.join(REPO, "docs", "serving.md")) as f:
        request, response = _json_blocks(f.read())
    images, labels = test_images
    documented = np.asarray(request["instances"])
    assert documented.shape == (2, 28, 28)
    np.testing.assert_array_equal(documented, images[:2])  # the first two test digits, as stated
    signature = tf.saved_model.load(exported[1]).signatures["serving_default"]
    served = tf_serving_row_predict(signature, request)
    classes = [p["classes"] for p in served["predictions"]]
    assert classes == [p["classes"] for p in response["predictions"]] == labels[:2].tolist()
    assert classes == keras_probabilities(smoke_model[1], images[:2]).argmax(axis=1).tolist()
    for mine, shown in zip(served["predictions"], response["predictions"]):
        assert sorted(shown) == sorted(mine) == ["classes", "probabilities"]
        assert len(shown["probabilities"]) == 10 and abs(sum(shown["probabilities"]) - 1) < 1e-4

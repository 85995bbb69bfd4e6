"""A model of the learner's own, named by reference: what is taken, what is refused (one
line naming what is wrong), the digest a run records, and loading its model.keras."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import REPO, TINY_NETWORK, error_lines, write_network
from kerasnets.models import convnets, user_code
from kerasnets.training import recipe

WIDTH_4_PARAMS = (3 * 3 * 1 * 4 + 4) + (3 * 3 * 4 * 8 + 8) + 1 + (8 * 10 + 10)  # by hand: 429

BROKEN = textwrap.dedent('''
    import keras
    from keras import layers

    def logits():
        return keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(), layers.Dense(10)])

    def flat_input():
        return keras.Sequential([keras.Input((28, 28)), layers.Flatten(),
                                 layers.Dense(10, activation="softmax")])

    def nine():
        return keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(),
                                 layers.Dense(9, activation="softmax")])

    def raises():
        raise RuntimeError("my design is unfinished")

    def a_number():
        return 3

    NOT_A_FUNCTION = 7
''')


def test_a_reference_builds_the_users_model(tmp_path):
    model = convnets.build_model(f"{write_network(tmp_path)}:build")
    assert sorted(os.listdir(tmp_path)) == ["tiny_net.py"]  # no __pycache__ beside it
    assert model.name == "tiny" and convnets.count_params(model) == (WIDTH_4_PARAMS, 0)
    out = keras.ops.convert_to_numpy(model(np.zeros((2, 28, 28, 1), "float32")))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
    # the built-in names build as before
    assert convnets.count_params(convnets.build_model("seed")) == (19130, 2 * (4 * 16 + 64 + 32))


@pytest.mark.parametrize("function, message", [
    ("logits", "its outputs are not probabilities (each row must be >= 0 and sum to 1): end it "
               "with a softmax"),
    ("flat_input", "its input is (batch, 28, 28); kerasnets needs input (batch, 28, 28, 1)"),
    ("nine", "its input is (batch, 28, 28, 1) and its output (batch, 9); kerasnets needs"),
    ("raises", "raised RuntimeError: my design is unfinished"),
    ("a_number", "returned int, not a Keras model"),
    ("NOT_A_FUNCTION", "broken.py's NOT_A_FUNCTION is a int, not a function"),
    ("missing", "broken.py has no function missing"),
])
def test_a_reference_that_cannot_be_used_is_one_line_saying_why(tmp_path, function, message):
    (tmp_path / "broken.py").write_text(BROKEN)
    with pytest.raises(user_code.ModelReferenceError) as refused:
        convnets.build_model(f"{tmp_path / 'broken.py'}:{function}")
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"--model: {tmp_path / 'broken.py'}")


def test_missing_files_and_modules_and_malformed_references(tmp_path):
    with pytest.raises(user_code.ModelReferenceError, match=r"^--model: nope\.py: no such file$"):
        convnets.build_model("nope.py:build")
    with pytest.raises(user_code.ModelReferenceError, match="no module named no_such_pkg.net"):
        convnets.build_model("no_such_pkg.net:build")
    (tmp_path / "syntax.py").write_text("def build(:\n")
    with pytest.raises(user_code.ModelReferenceError, match="importing .*syntax.py raised "
                                                            "SyntaxError"):
        convnets.build_model(f"{tmp_path / 'syntax.py'}:build")
    # the text alone is the recipe's check: TrainConfig refuses it when made
    for bad, words in [("wider", "must be one of seed, default, wide, fast, or a reference"),
                       ("net.py:2x", "after the colon comes the function's name"),
                       ("my-net:build", "before the colon comes a file ending in .py")]:
        with pytest.raises(recipe.ConfigError, match=words):
            recipe.TrainConfig(model=bad)
    assert recipe.TrainConfig(model="any/where/net.py:build").model == "any/where/net.py:build"
    assert recipe.TrainConfig(model="package.module:build").model == "package.module:build"


def test_a_module_reference_on_the_path_is_taken(tmp_path, monkeypatch):
    package = tmp_path / "designs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_network(package, name="tiny.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = convnets.build_model("designs.tiny:build")
    assert convnets.count_params(model)[0] == WIDTH_4_PARAMS
    digest = user_code.digest("designs.tiny:build", model.get_config())
    assert digest["source"] == user_code.digest(f"{package / 'tiny.py'}:build",
                                                model.get_config())["source"]


def test_the_digest_holds_the_code_not_the_process_that_built_it(tmp_path):
    reference = f"{write_network(tmp_path)}:build"
    first = user_code.digest(reference, convnets.build_model(reference).get_config())
    again = user_code.digest(reference, convnets.build_model(reference).get_config())
    assert first == again  # Keras named the second model's layers conv2d_2 ...: left out
    assert len(first["architecture"]) == len(first["source"]) == 64
    # a comment changes the source only; another width changes both
    (tmp_path / "tiny_net.py").write_text(TINY_NETWORK.replace("WIDTH", "4") + "# tuned\n")
    commented = user_code.digest(reference, convnets.build_model(reference).get_config())
    assert user_code.digest_changes(first, commented) == ["its source file"]
    write_network(tmp_path, width=6)
    wider = user_code.digest(reference, convnets.build_model(reference).get_config())
    assert user_code.digest_changes(first, wider) == ["its source file",
                                                      "the architecture it builds"]


def test_its_model_keras_loads_when_its_code_is_named(tmp_path):
    reference = f"{write_network(tmp_path)}:build"
    model = convnets.build_model(reference)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    path = str(tmp_path / "model.keras")
    model.save(path)
    # in a fresh process, as kerasnets-export and -predict run: without the code, the
    # error names the class; with it (the file, or the --model reference), it loads
    script = textwrap.dedent(f'''
        import sys
        from kerasnets.models import convnets
        try:
            model = convnets.load_model({path!r}, model_code=sys.argv[1] or None)
            print(convnets.count_params(model)[0])
        except Exception as e:
            print(type(e).__name__, e)
    ''')
    outputs = [subprocess.run([sys.executable, "-c", script, code], capture_output=True,
                              text=True, timeout=120, cwd=REPO).stdout.strip()
               for code in ("", str(tmp_path / "tiny_net.py"), reference)]
    assert outputs[0] == (
        f"ModelFileError cannot load {path}: it uses the class Scale, which no imported code "
        "registers; name the file that defines it (--model_code=PATH.py, or "
        "load_model(path, model_code=...))")
    assert outputs[1:] == [str(WIDTH_4_PARAMS)] * 2
    with pytest.raises(user_code.ModelReferenceError, match="^--model_code: gone.py: no such"):
        convnets.load_model(path, model_code="gone.py")


def test_kerasnets_train_refuses_an_unusable_reference_before_touching_the_run(tmp_path):
    (tmp_path / "broken.py").write_text(BROKEN)
    model_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "kerasnets.cli.train", "--recipe=smoke",
                           "--model=broken.py:logits", f"--model_dir={model_dir}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 1 and proc.stdout == ""
    assert error_lines(proc.stderr) == [
        "kerasnets-train: error: --model: broken.py:logits: its outputs are not probabilities "
        "(each row must be >= 0 and sum to 1): end it with a softmax, e.g. "
        'keras.layers.Activation("softmax", dtype="float32")']
    assert not model_dir.exists()

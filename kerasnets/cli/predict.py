r"""kerasnets-predict: classify digits in image files with an exported or saved model.

Each PNG, JPEG, GIF or BMP file is decoded and brought to MNIST's form (white
digit on black, fitted into 20x20, centred by mass in 28x28; kerasnets.data.images)
and classified by --model_path: a version directory, an export base (its
newest version) or a .keras file, run by --runtime (TensorFlow, ONNX Runtime,
LiteRT or LiteRT int8: the same answers from the version's files). One line per file; a file that cannot be
read gets one error line, the others are still predicted, and the exit status
is 1 if any failed.

  kerasnets-predict --model_path=savedmodels/mnist digit.png photo.jpg
  kerasnets-predict --model_path=runs/default/model.keras --top_k=3 *.png
"""

from __future__ import annotations

from typing import Sequence

from absl import app, flags

from kerasnets import errors
from kerasnets.data import images
from kerasnets.serving import runtimes, versions
from kerasnets.cli import command

FLAGS = flags.FLAGS

flags.DEFINE_string("model_path", "savedmodels/mnist",
                    "A SavedModel version directory, an export base (its highest version is "
                    "used) or a .keras file.")
flags.DEFINE_integer("top_k", 1, "Show the k most likely digits.", lower_bound=1, upper_bound=10)
flags.DEFINE_enum("runtime", runtimes.PREDICT_RUNTIME, list(runtimes.RUNTIMES), "What runs a version: its SavedModel (tensorflow), model.onnx (onnx), "
                  "model.tflite (litert) or model_int8.tflite (litert_int8).")

command.define_model_code_flag(__name__)


@flags.validator("model_path")
def _model_exists(value) -> bool:
    problem = versions.model_problem(value or "")
    if problem:
        raise flags.ValidationError(f"--model_path: {problem}")
    return True


def predict_command(model_path: str, paths: Sequence[str], top_k: int, runtime: str,
                    model_code: str | None = None) -> int:
    """Loads the model (a .keras file's custom layers from `model_code`) and predicts every
    file; exit status 1 if any file failed."""
    try:
        classify = versions.load_classifier(model_path, runtime, model_code)
    except (errors.NotAnMnistModelError, errors.ModelFileError,
            runtimes.MissingRuntimeFileError) as e:
        return command.fail(f"--model_path: {e}")
    if top_k > 1:
        print(f"file: digit:probability for the {top_k} most likely digits")
    results = versions.classify_files(classify, paths)
    for path, result in zip(paths, results):
        if isinstance(result, images.ImageError):
            command.fail(f"{path}: {result}")
        else:
            print(versions.format_prediction(path, result, top_k), flush=True)
    return 1 if any(isinstance(r, images.ImageError) for r in results) else 0


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        raise app.UsageError("name at least one image file (PNG, JPEG, GIF or BMP)")
    return predict_command(FLAGS.model_path, argv[1:], FLAGS.top_k, FLAGS.runtime,
                           FLAGS.model_code)


def run():
    """Console-script entry point (kerasnets-predict)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()

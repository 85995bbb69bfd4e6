r"""kerasnets-predict: classify digits in image files with an exported or saved model.

Each PNG, JPEG, GIF or BMP file is decoded and brought to MNIST's form (white
digit on black, fitted into 20x20, centred by mass in 28x28; kerasnets.images)
and classified by --model_path: a version directory, an export base (its
newest version) or a .keras file, run by --runtime (TensorFlow, ONNX Runtime,
LiteRT or LiteRT int8: the same answers from the version's files). One line per file; a file that cannot be
read gets one error line, the others are still predicted, and the exit status
is 1 if any failed.

  kerasnets-predict --model_path=savedmodels/mnist digit.png photo.jpg
  kerasnets-predict --model_path=runs/default/model.keras --top_k=3 *.png
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from absl import app, flags

from kerasnets import images, runtimes, serving
from kerasnets.cli import command

FLAGS = flags.FLAGS

flags.DEFINE_string("model_path", "savedmodels/mnist",
                    "A SavedModel version directory, an export base (its highest version is "
                    "used) or a .keras file.")
flags.DEFINE_integer("top_k", 1, "Show the k most likely digits.", lower_bound=1, upper_bound=10)
flags.DEFINE_enum("runtime", "tensorflow", list(runtimes.RUNTIMES), "What runs a version: its SavedModel (tensorflow), model.onnx (onnx), "
                  "model.tflite (litert) or model_int8.tflite (litert_int8).")


@flags.validator("model_path")
def _model_exists(value) -> bool:
    problem = serving.model_problem(value or "")
    if problem:
        raise flags.ValidationError(f"--model_path: {problem}")
    return True


def format_prediction(path: str, probabilities: np.ndarray, top_k: int) -> str:
    """`path: digit (p=...)`, or the top_k digits with their probabilities."""
    order = np.argsort(-probabilities)[:top_k]
    if top_k == 1:
        return f"{path}: {order[0]} (p={probabilities[order[0]]:.4f})"
    ranked = "  ".join(f"{d}:{probabilities[d]:.4f}" for d in order)
    return f"{path}: {ranked}"


def predict_files(paths: Sequence[str], classify, top_k: int = 1,
                  out=sys.stdout, err=sys.stderr) -> int:
    """Prints one line per file, in order; returns the number of files that failed."""
    prepared: list[np.ndarray | images.ImageError] = []
    for path in paths:
        try:
            prepared.append(images.to_mnist(images.load_image(path)))
        except images.ImageError as e:
            prepared.append(e)
    good = [p for p in prepared if not isinstance(p, images.ImageError)]
    probabilities = iter(classify(np.stack(good)) if good else [])
    for path, item in zip(paths, prepared):
        if isinstance(item, images.ImageError):
            print(f"{command.program_name()}: error: {path}: {item}", file=err, flush=True)
        else:
            print(format_prediction(path, next(probabilities), top_k), file=out, flush=True)
    return sum(isinstance(p, images.ImageError) for p in prepared)


def predict_command(model_path: str, paths: Sequence[str], top_k: int, runtime: str) -> int:
    """Loads the model and predicts every file; exit status 1 if any file failed."""
    from kerasnets import models

    try:
        classify = serving.load_classifier(model_path, runtime)
    except (models.NotAnMnistModelError, models.ModelFileError,
            runtimes.MissingRuntimeFileError) as e:
        return command.fail(f"--model_path: {e}")
    if top_k > 1:
        print(f"file: digit:probability for the {top_k} most likely digits")
    return 1 if predict_files(paths, classify, top_k) else 0


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        raise app.UsageError("name at least one image file (PNG, JPEG, GIF or BMP)")
    return predict_command(FLAGS.model_path, argv[1:], FLAGS.top_k, FLAGS.runtime)


def run():
    """Console-script entry point (kerasnets-predict)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()

r"""kerasnets-serve: the exported model behind TensorFlow Serving's REST API, and a page to
draw a digit.

Serves the newest version under --model_base (and switches to newer ones as they
are exported), run by --runtime (TensorFlow, ONNX Runtime, LiteRT or LiteRT int8:
the same answers from the version's files; versions without that runtime's file
are skipped), on TensorFlow Serving's paths and formats, so a client written for
one works with the other:

  GET  /v1/models/mnist                        version status
  GET  /v1/models/mnist/metadata               the signature (its SignatureDef)
  POST /v1/models/mnist:predict                {"instances": [...]} or {"inputs": ...}
  POST /v1/models/mnist/versions/1:predict     the same, naming the version
  GET  /                                       a page to draw a digit
  POST /draw                                   a PNG of a drawing -> the digit
  POST /inside                                 the same, and what the network sees in
                                               it: feature maps, saliency, layer table

It binds 127.0.0.1 unless --host says otherwise and refuses bodies over
--max_request_bytes with 413.

  kerasnets-serve --model_base=savedmodels/mnist [--port=8501]
"""

from __future__ import annotations

import os
import re
from typing import Sequence

from absl import app, flags

from kerasnets.serving import runtimes, versions
from kerasnets.cli import command

FLAGS = flags.FLAGS
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

flags.DEFINE_string("model_base", "savedmodels/mnist", "The export base: a directory of "
                    "numbered SavedModel versions (kerasnets-export writes them).")
flags.DEFINE_string("model_name", "mnist", "The model's name in the URLs (/v1/models/NAME): "
                    "letters, digits, '_', '.' or '-'.")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (127.0.0.1: this machine "
                    "only; 0.0.0.0 opens it to the network).")
flags.DEFINE_integer("port", 8501, "Port (0 = any free one; the URL is printed).",
                     lower_bound=0, upper_bound=65535)
flags.DEFINE_integer("max_request_bytes", 4 << 20, "Largest request body; bigger ones get 413.",
                     lower_bound=4096)
flags.DEFINE_float("poll_seconds", 1.0, "How often --model_base is checked for a new version.",
                   lower_bound=0.01)
flags.DEFINE_bool("batching", True, "Run requests that arrive together as one batch.")
flags.DEFINE_enum("inference", "auto", ["auto", "thread", "event_loop"], "Where a model call "
                  "runs: in a worker thread, or on the event loop (cheaper for a call shorter "
                  "than the hop to the thread); auto: the event loop for the LiteRT runtimes, "
                  "a thread for tensorflow and onnx (docs/serving.md has both measured).")
flags.DEFINE_enum("runtime", runtimes.SERVE_RUNTIME, list(runtimes.RUNTIMES), "What runs a version: its SavedModel (tensorflow), model.onnx (onnx), "
                  "model.tflite (litert) or model_int8.tflite (litert_int8).")
flags.register_validator("model_name", lambda v: bool(_MODEL_NAME.match(v or "")),
                         "--model_name must be letters, digits, '_', '.' or '-'")


@flags.multi_flags_validator(["model_base", "runtime"])
def _has_a_version(values) -> bool:
    base, runtime = values["model_base"], values["runtime"]
    if not base or not os.path.isdir(base):
        raise flags.ValidationError(f"--model_base: {base} is not a directory (export a "
                                    "model first: kerasnets-export or make run)")
    if not versions.complete_versions(base):
        raise flags.ValidationError(f"--model_base: {os.path.abspath(base)} holds no "
                                    "numbered SavedModel version (e.g. 1/saved_model.pb)")
    if not versions.complete_versions(base, runtime):
        raise flags.ValidationError(
            f"--model_base: no version under {os.path.abspath(base)} has "
            f"{runtimes.FILES[runtime]} for --runtime={runtime}; export one with kerasnets-export "
            "(its default formats include it), or choose another --runtime")
    return True


def main(argv: Sequence[str]) -> int:
    """Serves until stopped; a server that cannot start (rest_api.ServeError) ends in one
    error line, through command.run. Lines are flushed: a caller waits for the URL."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from kerasnets.serving import rest_api  # Starlette: imported once the flags are known good

    rest_api.serve(FLAGS.model_base, FLAGS.host, FLAGS.port, FLAGS.runtime,
                   model_name=FLAGS.model_name, max_request_bytes=FLAGS.max_request_bytes,
                   poll_seconds=FLAGS.poll_seconds, batching=FLAGS.batching,
                   inference=FLAGS.inference, log=lambda line: print(line, flush=True))
    return 0


def run():
    """Console-script entry point (kerasnets-serve)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()

"""The serving core, free of any HTTP: model versions on disk, loaded and followed.

`ModelWatcher` loads the newest version under an export base (in runtimes.SERVE_RUNTIME,
LiteRT, unless another runtime is named, as kerasnets-serve does) and keeps
polling it, switching to a newly exported version once it has loaded (requests in
flight keep the version they started with). `load_classifier` is the same model as
a plain function, for kerasnets-predict. kerasnets.serving.rest_formats holds TensorFlow
Serving's JSON formats; kerasnets.serving.rest_api puts both behind HTTP.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Callable

import numpy as np

from kerasnets import errors
from kerasnets.serving import export, runtimes


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """One loaded version: its number, the runtime running it, its prediction function and
    the SavedModel's SignatureDef as JSON (the metadata TensorFlow Serving reports)."""

    version: int
    path: str
    runtime: str
    predict: runtimes.Predict  # uint8 [batch, 28, 28] -> {"classes", "probabilities"}
    signature_def: dict


def load_version(export_base: str, version: int,
                 runtime: str = runtimes.SERVE_RUNTIME) -> ServedModel:
    """Loads `export_base/version` in `runtime`; raises runtimes.MissingRuntimeFileError
    when the version has no file for it and errors.NotAnMnistModelError when it is not a
    kerasnets model."""
    path = os.path.join(export_base, str(version))
    predict = runtimes.load(path, runtime)
    return ServedModel(version, path, runtime, predict, export.read_signature_def(path))


def complete_versions(export_base: str, runtime: str = "tensorflow") -> list[int]:
    """Version directories that hold a saved_model.pb and the runtime's file, ascending."""
    return [v for v in export.versions(export_base)
            if os.path.isfile(os.path.join(export_base, str(v), "saved_model.pb"))
            and runtimes.has_file(os.path.join(export_base, str(v)), runtime)]


class ModelWatcher:
    """Serves the newest version under `export_base` in `runtime`, polling for new ones every
    `poll_seconds` in a background thread (as TensorFlow Serving's file-system
    source does). A version that fails to load, or has no file for the runtime, is
    logged once and skipped; the previous one keeps serving."""

    def __init__(self, export_base: str, poll_seconds: float = 1.0,
                 log: Callable[[str], None] = print, runtime: str = runtimes.SERVE_RUNTIME):
        self.export_base = os.path.abspath(export_base)
        self.poll_seconds = poll_seconds
        self.log = log
        self.runtime = runtime
        self.current: ServedModel | None = None
        self._failed: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Loads the newest complete version if it is newer than the one being served."""
        self._skip_versions_without_the_runtime()
        newest = next((v for v in reversed(complete_versions(self.export_base, self.runtime))
                       if v not in self._failed), None)
        if newest is None or (self.current and newest <= self.current.version):
            return
        try:
            model = load_version(self.export_base, newest, self.runtime)
        except Exception as e:  # noqa: BLE001 -- any unloadable version: log it, keep serving
            self._failed.add(newest)
            self.log(f"kerasnets-serve: version {newest} not loaded ({e}); still serving "
                     f"{self.current.version if self.current else 'nothing'}")
            return
        previous, self.current = self.current, model  # one reference swap
        self.log(f"kerasnets-serve: serving version {newest}" +
                 (f" (was {previous.version})" if previous else ""))

    def load_first(self) -> None:
        """At start: the newest version that loads (newer ones that fail are logged and
        skipped, as later polls would)."""
        while self.current is None and any(
                v not in self._failed for v in complete_versions(self.export_base, self.runtime)):
            self.poll()

    def _skip_versions_without_the_runtime(self) -> None:
        """One log line for each new version that has no file for the runtime."""
        for version in complete_versions(self.export_base):
            path = os.path.join(self.export_base, str(version))
            if version not in self._failed and not runtimes.has_file(path, self.runtime):
                self._failed.add(version)
                self.log(f"kerasnets-serve: version {version} has no "
                         f"{runtimes.FILES[self.runtime]}; skipped (--runtime={self.runtime})")

    def start(self) -> None:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.poll()


def load_classifier(path: str, runtime: str = runtimes.PREDICT_RUNTIME,
                    model_code: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function uint8 [batch, 28, 28] → float32 probabilities [batch, 10].

    `path` is a version directory, an export base (its highest version is used) or a
    `.keras` file (run by Keras: `runtime` must be tensorflow). Raises
    errors.ModelFileError for one that cannot be read, errors.NotAnMnistModelError for
    another kind of model and runtimes.MissingRuntimeFileError for a version without
    the runtime's file.
    """
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        path = export.latest_version_dir(path) or path
    if os.path.isdir(path):
        predict = runtimes.load(path, runtime)
        return lambda images: predict(images)["probabilities"]
    if runtime != "tensorflow":
        raise errors.ModelFileError(f"{path}: a .keras file runs in Keras (--runtime=tensorflow); "
                                    f"for --runtime={runtime} export it first (kerasnets-export)")
    from kerasnets.models import convnets

    model = convnets.load_model(path, compile=False, model_code=model_code)
    channel = convnets.add_channel_axis(model)
    return lambda images: np.asarray(
        model(images[..., None] if channel else images, training=False), np.float32)


def classify_files(classify: Callable[[np.ndarray], np.ndarray],
                   paths: list[str]) -> list[np.ndarray | Exception]:
    """Each image file brought to MNIST's form (kerasnets.data.images) and classified, all in one
    batch: per file its probabilities, or the images.ImageError that stopped it (the
    others are still classified)."""
    from kerasnets.data import images

    prepared: list = []
    for path in paths:
        try:
            prepared.append(images.to_mnist(images.load_image(path)))
        except images.ImageError as e:
            prepared.append(e)
    good = [p for p in prepared if not isinstance(p, images.ImageError)]
    probabilities = iter(classify(np.stack(good)) if good else [])
    return [p if isinstance(p, images.ImageError) else next(probabilities) for p in prepared]


def format_prediction(path: str, probabilities: np.ndarray, top_k: int = 1) -> str:
    """`path: digit (p=...)`, or the top_k digits with their probabilities."""
    order = np.argsort(-probabilities)[:top_k]
    if top_k == 1:
        return f"{path}: {order[0]} (p={probabilities[order[0]]:.4f})"
    ranked = "  ".join(f"{d}:{probabilities[d]:.4f}" for d in order)
    return f"{path}: {ranked}"


def model_problem(path: str) -> str | None:
    """Why `path` is not something load_classifier() takes, or None."""
    if os.path.isfile(path):
        return None if path.endswith(".keras") else f"{path} is a file but not a .keras model"
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")) or export.versions(path):
            return None
        return f"{path} holds neither saved_model.pb nor numbered SavedModel versions"
    return f"{path} does not exist"

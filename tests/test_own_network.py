"""A learner's own network the whole way, through the commands as a user runs them from
the directory holding their file: its design card, a run killed with SIGKILL and
resumed (refused while the file was edited), a sweep at two seeds, export, predict,
serve with /inside, and a comparison against a built-in run."""

import json
import subprocess
import sys

import numpy as np
from conftest import error_lines, kill_after_backup, tree, write_network
from kerasnets.bench import serve_load
from kerasnets.models import convnets
from kerasnets.training import run_dir

# The tiny recipe: the smoke recipe cut to 3 epochs on 512 images, tested on 200.
TINY = ["--recipe=smoke", "--epochs=3", "--train_examples=512", "--test_examples=200"]
REFERENCE = "tiny_net.py:build"
# By hand: conv 3x3x1x4 + 4, conv 3x3x4x8 + 8, Scale 1, dense 8x10 + 10.
PARAMS = (9 * 4 + 4) + (9 * 4 * 8 + 8) + 1 + (8 * 10 + 10)
# 26x26x4 outputs of 9 MACs, 11x11x8 of 36, and the dense 8x10.
MACS = 26 * 26 * 4 * 9 + 11 * 11 * 8 * 36 + 8 * 10


def command(name, *args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", f"kerasnets.cli.{name}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def history(model_dir):
    return [line.split(",")[:-1] for line in (model_dir / "history.csv").read_text().splitlines()]


def test_the_learners_network_goes_the_whole_way(real_mnist, smoke_run, tmp_path):
    write_network(tmp_path)
    data = f"--data_dir={real_mnist[1]}"
    run = [*TINY, f"--model={REFERENCE}", data]

    # 1. the card, before training: the numbers worked out by hand above
    card_run = command("design", f"--model={REFERENCE}", "--json", cwd=tmp_path)
    assert card_run.returncode == 0, card_run.stderr
    card = json.loads(card_run.stdout.splitlines()[-1])
    assert (card["trainable_params"], card["macs"]) == (PARAMS, MACS)
    assert [row["receptive_field"] for row in card["layers"]][:4] == [1, 3, 4, 8]
    assert (card["receptive_field"], card["covers_digit"]) == (8, False)
    over = command("design", f"--model={REFERENCE}", f"--max_params={PARAMS - 1}", cwd=tmp_path)
    assert over.returncode == 1 and error_lines(over.stderr) == [
        f"kerasnets-design: error: tiny has {PARAMS:,} trainable parameters, over "
        f"--max_params={PARAMS - 1:,}"]

    # 2. trained whole, and killed after epoch 1 then resumed: the same history
    whole = command("train", *run, f"--model_dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    # the run's design.json is the card of the model it trained (Keras numbered its layers
    # on in that process: conv2d_1 ...)
    recorded = json.loads((tmp_path / "whole" / run_dir.DESIGN_FILE).read_text())
    assert [{k: v for k, v in row.items() if k != "name"} for row in recorded.pop("layers")] == [
        {k: v for k, v in row.items() if k != "name"} for row in card.pop("layers")]
    assert recorded == card
    killed = tmp_path / "killed"
    kill_after_backup([sys.executable, "-m", "kerasnets.cli.train", *run], killed, 1, tmp_path)
    backup = tree(killed / "backup")

    # 3. the file edited meanwhile: the restart is refused, the backup untouched
    write_network(tmp_path, width=6)
    refused = command("train", *run, f"--model_dir={killed}", cwd=tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert error_lines(refused.stderr) == [
        f"kerasnets-train: error: --model_dir: {killed} holds a run of --model={REFERENCE} "
        "whose code changed since it started (its source file and the architecture it "
        "builds); put the file back as it was to resume, or start afresh with --overwrite"]
    assert tree(killed / "backup") == backup
    write_network(tmp_path)
    resumed = command("train", *run, f"--model_dir={killed}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "(epoch 1 of 3 done)" in resumed.stdout
    assert history(killed) == history(tmp_path / "whole")
    recorded = json.loads((killed / run_dir.RECIPE_FILE).read_text())
    assert recorded["model"] == REFERENCE and set(recorded["model_digest"]) == {
        "architecture", "source"}

    # 4. a sweep at two seeds: each seed an ordinary run of the reference
    sweep = command("sweep", *run, "--seeds=0,1", "--epochs=2", f"--out_dir={tmp_path / 'sweep'}",
                    cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert [row["seed"] for row in summary["rows"]] == [0, 1] and summary["seeds"] == 2
    for seed in (0, 1):
        ran = json.loads((tmp_path / "sweep" / f"seed-{seed}" / "results.json").read_text())
        assert (ran["model"], ran["trainable_params"], ran["flags"]["seed"]) == (
            REFERENCE, PARAMS, seed)

    # 5. export: without its code the one line names the class; with it, a version
    base = tmp_path / "savedmodels" / "mnist"
    no_code = command("export", f"--model_dir={killed}", f"--export_base={base}", cwd=tmp_path)
    assert no_code.returncode == 1 and error_lines(no_code.stderr) == [
        f"kerasnets-export: error: cannot load {killed / 'model.keras'}: it uses the class "
        "Scale, which no imported code registers; name the file that defines it "
        "(--model_code=PATH.py, or load_model(path, model_code=...))"]
    assert not base.exists()
    exported = command("export", f"--model_dir={killed}", f"--export_base={base}",
                       "--model_code=tiny_net.py", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert (base / "1" / "saved_model.pb").is_file()

    # 6. predict: the version and the .keras file (with its code) agree with Keras
    (_, _), (x_test, _) = real_mnist[0]
    from PIL import Image
    Image.fromarray(255 - x_test[0]).save(tmp_path / "digit.png")  # dark on light, as drawn
    model = convnets.load_model(str(killed / "model.keras"), model_code=str(tmp_path / "tiny_net.py"))
    lines = [command("predict", f"--model_path={path}", *code, "digit.png", cwd=tmp_path)
             for path, code in ((base, ()), (killed / "model.keras", ("--model_code=tiny_net.py",)))]
    assert all(p.returncode == 0 for p in lines), [p.stderr for p in lines]
    digits = {p.stdout.split(": ")[1].split(" ")[0] for p in lines}
    assert len(digits) == 1 and digits.pop().isdigit()

    # 7. serve: predictions and the inside view of the version
    with serve_load.running_server(str(base)) as url:
        connection = serve_load.connect(url)
        try:
            body = json.dumps({"instances": x_test[:4].tolist()})
            connection.request("POST", "/v1/models/mnist:predict", body=body,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200
            served = np.array([p["probabilities"] for p in json.loads(response.read())["predictions"]])
            connection.request("POST", "/inside", body=(tmp_path / "digit.png").read_bytes(),
                               headers={"Content-Type": "image/png"})
            response = connection.getresponse()
            assert response.status == 200
            inside = json.loads(response.read())
        finally:
            connection.close()
    np.testing.assert_allclose(served, model.predict(x_test[:4, ..., None], verbose=0), atol=1e-4)
    convs = [row for row in inside["layers"] if row["op"] == "CONV_2D"]
    assert [row["receptive_field"] for row in convs] == [3, 8]  # as the card says
    assert len(inside["feature_maps"]) == 2 and abs(sum(inside["probabilities"]) - 1) < 1e-4

    # 8. compare against the built-in smoke run
    compared = command("compare", str(killed), str(smoke_run[0]), f"--out_dir={tmp_path / 'cmp'}",
                       "--json", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    rows = json.loads(compared.stdout.splitlines()[-1])["runs"]
    assert [(r["model"], r["trainable_params"], r["macs"]) for r in rows] == [
        (REFERENCE, PARAMS, MACS), ("default", 7826, 1120152)]
    assert (tmp_path / "cmp" / "compare.csv").is_file() and (tmp_path / "cmp" / "compare.png").is_file()

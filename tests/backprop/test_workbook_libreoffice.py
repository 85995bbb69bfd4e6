"""The live workbook, recalculated for real by headless LibreOffice.

LibreOffice keeps an .xlsx file's cached values unless told to recalculate on
load, and our workbook caches the TensorFlow values, so a plain conversion would
pass on stale numbers. The tests therefore run LibreOffice with a private profile
set to always recalculate, and prove it: a workbook with a wrong formula (but the
right cached values) must come out wrong, and an edited lr cell must change
every row.
"""

import csv
import os
import re
import shutil
import subprocess
import zipfile

import numpy as np
import pytest

from kerasnets.backprop import chain_rule, workbook

RECALC_ALWAYS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
           xmlns:xs="http://www.w3.org/2001/XMLSchema"
           xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">
  <prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""
# CSV export of every sheet (last token -1), UTF-8, values not "as shown" (full precision).
CSV_FILTER = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1"
LRS = (0.5, 2.0)
STEPS = 30


@pytest.fixture(scope="module")
def soffice(tmp_path_factory):
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("LibreOffice (soffice) is missing; .ci/run installs libreoffice-calc-nogui")
        pytest.skip("LibreOffice not installed (apt-get install libreoffice-calc-nogui)")
    profile = tmp_path_factory.mktemp("lo-profile")
    (profile / "user").mkdir()
    (profile / "user" / "registrymodifications.xcu").write_text(RECALC_ALWAYS)
    return exe, profile


def recalculated_sheets(soffice, xlsx) -> dict[str, list[list[str]]]:
    """Opens `xlsx` in LibreOffice (recalculating every formula) and returns each sheet's cells."""
    exe, profile = soffice
    out = xlsx.parent / f"{xlsx.stem}-csv"
    proc = subprocess.run(
        [exe, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--convert-to",
         CSV_FILTER, "--outdir", str(out), str(xlsx)],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    sheets = {}
    for name in os.listdir(out):
        with open(out / name, newline="", encoding="utf-8") as f:
            sheets[name[len(xlsx.stem) + 1:-len(".csv")]] = list(csv.reader(f))
    return sheets


def step_rows(cells: list[list[str]]) -> dict[str, np.ndarray]:
    """Columns of the step table, found under its header row (the CSV's column names)."""
    start = next(k for k, row in enumerate(cells) if row[:2] == ["lr", "step"])
    header = cells[start][:len(chain_rule.COLUMNS)]
    assert tuple(header) == chain_rule.COLUMNS
    data = np.array([row[:len(header)] for row in cells[start + 1:]], dtype=np.float64)
    return {name: data[:, k] for k, name in enumerate(header)}


def max_relative_error(sheet: dict[str, np.ndarray], run: chain_rule.Run) -> float:
    worst = 0.0
    for name in chain_rule.WEIGHT_NAMES + ("E_total",):
        ours = run.column(name)
        assert sheet[name].shape == ours.shape
        worst = max(worst, float(np.max(np.abs(sheet[name] - ours) / np.abs(ours))))
    return worst


@pytest.fixture(scope="module")
def runs():
    return chain_rule.sweep(chain_rule.ToyNet(), LRS, STEPS)


def test_recalculated_workbook_matches_tensorflow(soffice, runs, tmp_path):
    path = tmp_path / "backprop.xlsx"
    workbook.write_workbook(path, chain_rule.ToyNet(), runs)
    sheets = recalculated_sheets(soffice, path)
    assert set(sheets) == {"lr_0.5", "lr_2.0", "summary", "derivation"}
    for run in runs:
        assert max_relative_error(step_rows(sheets[workbook.sheet_name(run.lr)]), run) <= 1e-9
    summary = {row[0]: row[1:5] for row in sheets["summary"] if row and row[0] in ("0.5", "2")}
    assert summary["2"][3] == "16" and summary["0.5"][3] == "—"
    assert float(summary["0.5"][2]) == pytest.approx(runs[0].column("E_total")[-1], rel=1e-9)


def test_a_wrong_formula_is_caught_despite_right_cached_values(soffice, runs, tmp_path, monkeypatch):
    real = workbook._row_formulas

    def slip_in_dw3(row):  # a_h1 where a_h2 belongs, as the course's slip would have it
        f = real(row)
        f["dE_dw3"] = f["dE_dw3"].replace(workbook.xl_rowcol_to_cell(row, chain_rule.COLUMNS.index("a_h2")),
                                          workbook.xl_rowcol_to_cell(row, chain_rule.COLUMNS.index("a_h1")))
        return f

    monkeypatch.setattr(workbook, "_row_formulas", slip_in_dw3)
    path = tmp_path / "wrong.xlsx"
    workbook.write_workbook(path, chain_rule.ToyNet(), runs)  # cached values still TensorFlow's
    sheet = step_rows(recalculated_sheets(soffice, path)["lr_2.0"])
    assert max_relative_error(sheet, runs[1]) > 1e-7
    # The slip first shows in w3 after one update; w1 is still right at that step.
    assert abs(sheet["w3"][1] / runs[1].column("w3")[1] - 1) > 1e-7
    assert sheet["w1"][1] == pytest.approx(runs[1].column("w1")[1], rel=1e-12)


def test_editing_the_lr_cell_recomputes_every_row(soffice, runs, tmp_path):
    path = tmp_path / "edited.xlsx"
    workbook.write_workbook(path, chain_rule.ToyNet(), runs[:1])  # lr 0.5 sheet, lr 0.5 cached values
    lr_cell = f"B{workbook.FIRST_PARAMETER_ROW + workbook.PARAMETER_NAMES.index('lr') + 1}"
    edited = tmp_path / "edited2.xlsx"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data, n = re.subn(rf'(<c r="{lr_cell}"[^>]*><v>)0\.5(</v>)'.encode(), rb"\g<1>2\g<2>", data)
                assert n == 1
            dst.writestr(item, data)
    sheet = step_rows(recalculated_sheets(soffice, edited)["lr_0.5"])
    assert max_relative_error(sheet, runs[1]) <= 1e-9  # now the lr = 2.0 run

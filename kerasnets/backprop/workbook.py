"""The live spreadsheet: the whole backprop computation as Excel formulas.

One sheet per learning rate (`lr_<value>`) holds the inputs, targets, biases,
learning rate and initial weights in labelled (yellow) cells, then one row per
step whose every computed cell is a formula over those cells and the previous
row, so editing a weight or the learning rate recomputes the sheet in Excel or
LibreOffice. The TensorFlow values are stored as the formulas' cached results,
so viewers that do not calculate still show numbers.
"""

from __future__ import annotations

import os
from typing import Sequence

import xlsxwriter
from xlsxwriter.utility import xl_rowcol_to_cell

from kerasnets.backprop.chain_rule import COLUMNS, WEIGHT_NAMES, Run, ToyNet

PARAMETER_NAMES = ("i1", "i2", "t1", "t2", "b1", "b2", "lr") + WEIGHT_NAMES
FIRST_PARAMETER_ROW = 2  # 0-based row of i1; the title and a blank row come first
HEADER_ROW = FIRST_PARAMETER_ROW + len(PARAMETER_NAMES) + 1
THRESHOLD = 0.05

DERIVATION = (
    ("delta_o1", "dE_total/do1 = (a_o1 - t1) * a_o1 * (1 - a_o1)"),
    ("delta_o2", "dE_total/do2 = (a_o2 - t2) * a_o2 * (1 - a_o2)"),
    ("dE_dw5", "delta_o1 * a_h1   (o1 = w5*a_h1 + w6*a_h2 + b2)"),
    ("dE_dw6", "delta_o1 * a_h2"),
    ("dE_dw7", "delta_o2 * a_h1   (o2 = w7*a_h1 + w8*a_h2 + b2)"),
    ("dE_dw8", "delta_o2 * a_h2"),
    ("delta_h1", "dE_total/dh1 = (delta_o1 * w5 + delta_o2 * w7) * a_h1 * (1 - a_h1)"),
    ("delta_h2", "dE_total/dh2 = (delta_o1 * w6 + delta_o2 * w8) * a_h2 * (1 - a_h2)"),
    ("dE_dw1", "delta_h1 * i1   (h1 = w1*i1 + w2*i2 + b1)"),
    ("dE_dw2", "delta_h1 * i2"),
    ("dE_dw3", "delta_h2 * i1   (h2 = w3*i1 + w4*i2 + b1)"),
    ("dE_dw4", "delta_h2 * i2"),
    ("update", "w_k(step + 1) = w_k(step) - lr * dE_dw_k(step), all eight from the same forward pass"),
)


def sheet_name(lr: float) -> str:
    return f"lr_{lr!r}"


def _row_formulas(row: int) -> dict[str, str]:
    """Formulas of every computed column in 0-based data row `row` (step > 0 for weights)."""
    p = {name: xl_rowcol_to_cell(FIRST_PARAMETER_ROW + k, 1, row_abs=True, col_abs=True)
         for k, name in enumerate(PARAMETER_NAMES)}
    c = {name: xl_rowcol_to_cell(row, k) for k, name in enumerate(COLUMNS)}
    prev = {name: xl_rowcol_to_cell(row - 1, k) for k, name in enumerate(COLUMNS)}
    delta_o1 = f"({c['a_o1']}-{p['t1']})*{c['a_o1']}*(1-{c['a_o1']})"
    delta_o2 = f"({c['a_o2']}-{p['t2']})*{c['a_o2']}*(1-{c['a_o2']})"
    delta_h1 = f"({delta_o1}*{c['w5']}+{delta_o2}*{c['w7']})*{c['a_h1']}*(1-{c['a_h1']})"
    delta_h2 = f"({delta_o1}*{c['w6']}+{delta_o2}*{c['w8']})*{c['a_h2']}*(1-{c['a_h2']})"
    f = {
        "lr": f"={p['lr']}",
        "h1": f"={c['w1']}*{p['i1']}+{c['w2']}*{p['i2']}+{p['b1']}",
        "h2": f"={c['w3']}*{p['i1']}+{c['w4']}*{p['i2']}+{p['b1']}",
        "a_h1": f"=1/(1+EXP(-{c['h1']}))",
        "a_h2": f"=1/(1+EXP(-{c['h2']}))",
        "o1": f"={c['w5']}*{c['a_h1']}+{c['w6']}*{c['a_h2']}+{p['b2']}",
        "o2": f"={c['w7']}*{c['a_h1']}+{c['w8']}*{c['a_h2']}+{p['b2']}",
        "a_o1": f"=1/(1+EXP(-{c['o1']}))",
        "a_o2": f"=1/(1+EXP(-{c['o2']}))",
        "E1": f"=0.5*({p['t1']}-{c['a_o1']})^2",
        "E2": f"=0.5*({p['t2']}-{c['a_o2']})^2",
        "E_total": f"={c['E1']}+{c['E2']}",
        "dE_dw1": f"={delta_h1}*{p['i1']}",
        "dE_dw2": f"={delta_h1}*{p['i2']}",
        "dE_dw3": f"={delta_h2}*{p['i1']}",
        "dE_dw4": f"={delta_h2}*{p['i2']}",
        "dE_dw5": f"={delta_o1}*{c['a_h1']}",
        "dE_dw6": f"={delta_o1}*{c['a_h2']}",
        "dE_dw7": f"={delta_o2}*{c['a_h1']}",
        "dE_dw8": f"={delta_o2}*{c['a_h2']}",
    }
    for w in WEIGHT_NAMES:
        f[w] = f"={prev[w]}-{p['lr']}*{prev['dE_d' + w]}" if row > HEADER_ROW + 1 else f"={p[w]}"
    return f


def _write_lr_sheet(book, net: ToyNet, run: Run, fmt) -> None:
    ws = book.add_worksheet(sheet_name(run.lr))
    ws.write(0, 0, f"2-2-2 network, gradient descent at lr = {run.lr!r}. Edit the yellow "
                   "cells: every row below recomputes from them.", fmt["title"])
    values = dict(i1=net.i1, i2=net.i2, t1=net.t1, t2=net.t2, b1=net.b1, b2=net.b2,
                  lr=run.lr, **dict(zip(WEIGHT_NAMES, net.weights)))
    for k, name in enumerate(PARAMETER_NAMES):
        label = f"{name} (initial)" if name in WEIGHT_NAMES else name
        ws.write(FIRST_PARAMETER_ROW + k, 0, label, fmt["label"])
        ws.write_number(FIRST_PARAMETER_ROW + k, 1, values[name], fmt["input"])
    ws.write_row(HEADER_ROW, 0, COLUMNS, fmt["header"])
    for step, values_row in enumerate(run.rows):
        row = HEADER_ROW + 1 + step
        formulas = _row_formulas(row)
        for col, name in enumerate(COLUMNS):
            if name == "step":
                ws.write_number(row, col, step)
            else:
                ws.write_formula(row, col, formulas[name], fmt["number"], float(values_row[col]))
    ws.freeze_panes(HEADER_ROW + 1, 2)
    ws.set_column(0, 0, 12)
    ws.set_column(2, len(COLUMNS) - 1, 13)

    chart = book.add_chart({"type": "line"})
    chart.add_series({
        "name": f"E_total, lr = {run.lr!r}",
        "categories": _column_range(run, "step"),
        "values": _column_range(run, "E_total"),
    })
    chart.set_title({"name": f"E_total by step, lr = {run.lr!r}"})
    chart.set_x_axis({"name": "step", "interval_unit": max(1, len(run.rows) // 10)})
    chart.set_y_axis({"name": "E_total"})
    chart.set_legend({"none": True})
    ws.insert_chart(1, 3, chart, {"x_scale": 1.4, "y_scale": 1.0})


def _column_range(run: Run, name: str) -> list:
    col = COLUMNS.index(name)
    first = HEADER_ROW + 1
    return [sheet_name(run.lr), first, col, first + len(run.rows) - 1, col]


def _write_summary(book, runs: Sequence[Run], fmt, log_scale: bool) -> None:
    ws = book.add_worksheet("summary")
    ws.write(0, 0, "Learning-rate study: E_total by step for every learning rate "
                   "(cells link to the lr_ sheets).", fmt["title"])
    last_step = len(runs[0].rows) - 1
    header = ("lr", "E_total step 0", "E_total step 1", f"E_total step {last_step}",
              f"first step E_total < {THRESHOLD}")
    ws.write_row(2, 0, header, fmt["header"])
    for k, run in enumerate(runs):
        row = 3 + k
        sheet, first, col, last, _ = _column_range(run, "E_total")
        quoted = f"'{sheet}'"
        e_range = f"{quoted}!{xl_rowcol_to_cell(first, col, True, True)}:" \
                  f"{xl_rowcol_to_cell(last, col, True, True)}"
        step_col = COLUMNS.index("step")
        s_range = f"{quoted}!{xl_rowcol_to_cell(first, step_col, True, True)}:" \
                  f"{xl_rowcol_to_cell(last, step_col, True, True)}"
        e = run.column("E_total")
        ws.write_formula(row, 0, f"={quoted}!{xl_rowcol_to_cell(FIRST_PARAMETER_ROW + 6, 1)}",
                         None, run.lr)
        for j, step in enumerate((0, 1, last_step)):
            ws.write_formula(row, 1 + j, f"={quoted}!{xl_rowcol_to_cell(first + step, col)}",
                             fmt["number"], float(e[step]))
        hit = run.first_step_below(THRESHOLD)
        ws.write_formula(row, 4, f'=IF(COUNTIF({e_range},"<{THRESHOLD}")=0,"—",'
                                 f'MINIFS({s_range},{e_range},"<{THRESHOLD}"))',
                         None, "—" if hit is None else hit)
    ws.set_column(0, 4, 22)

    chart = book.add_chart({"type": "line"})
    for run in runs:
        chart.add_series({"name": f"lr = {run.lr!r}",
                          "categories": _column_range(run, "step"),
                          "values": _column_range(run, "E_total")})
    chart.set_title({"name": "E_total by step, all learning rates"})
    chart.set_x_axis({"name": "step", "interval_unit": max(1, last_step // 10)})
    chart.set_y_axis({"name": "E_total", **({"log_base": 10} if log_scale else {})})
    ws.insert_chart(4 + len(runs), 0, chart, {"x_scale": 2.0, "y_scale": 1.5})


def _write_derivation(book, fmt) -> None:
    ws = book.add_worksheet("derivation")
    ws.write(0, 0, "Chain rule for E_total = 1/2 (t1 - a_o1)^2 + 1/2 (t2 - a_o2)^2, "
                   "sigmoid units (docs/backprop.md has the full derivation).", fmt["title"])
    ws.write_row(2, 0, ("quantity", "formula"), fmt["header"])
    for k, (name, text) in enumerate(DERIVATION):
        ws.write_row(3 + k, 0, (name, text))
    ws.set_column(0, 0, 12)
    ws.set_column(1, 1, 90)


def write_workbook(path: str | os.PathLike, net: ToyNet, runs: Sequence[Run],
                   log_scale: bool = True) -> None:
    """Writes the live workbook for `runs` (all of the same length) to `path`."""
    book = xlsxwriter.Workbook(os.fspath(path), {"use_future_functions": True})
    fmt = {
        "title": book.add_format({"bold": True}),
        "label": book.add_format({"bold": True}),
        "input": book.add_format({"bg_color": "#FFF2CC", "border": 1}),
        "header": book.add_format({"bold": True, "bottom": 1}),
        "number": book.add_format({"num_format": "0.000000000"}),
    }
    for run in runs:
        _write_lr_sheet(book, net, run, fmt)
    _write_summary(book, runs, fmt, log_scale)
    _write_derivation(book, fmt)
    book.close()

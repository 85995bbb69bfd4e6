"""The 2-2-2 backprop workbench: forward pass, hand-derived gradients, the tape check.

The network (docs/backprop.md derives every formula used here)::

    h1 = w1*i1 + w2*i2 + b1        h2 = w3*i1 + w4*i2 + b1        a_h = sigmoid(h)
    o1 = w5*a_h1 + w6*a_h2 + b2    o2 = w7*a_h1 + w8*a_h2 + b2    a_o = sigmoid(o)
    E1 = 1/2 (t1 - a_o1)^2         E2 = 1/2 (t2 - a_o2)^2         E_total = E1 + E2

Everything is float64 TensorFlow. Training is plain gradient descent on w1..w8
(the biases are held fixed, as in the classic worked example). At every step the
closed-form gradients are compared with `tf.GradientTape` on the same loss, and a
disagreement above `GRADIENT_RTOL` raises `GradientMismatchError`: the hand
derivation is the lesson, the tape is the referee.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from kerasnets.errors import KerasnetsError
# The network's setting and the names of what it records (re-exported: chain_rule.ToyNet, ...).
from kerasnets.backprop.toynet import (COLUMNS, FORWARD_NAMES, GRADIENT_NAMES,  # noqa: F401
                              GRADIENT_RTOL, WEIGHT_NAMES, ToyNet, check_field, check_lrs,
                              check_steps)


class GradientMismatchError(KerasnetsError, RuntimeError):
    """The hand-derived gradient disagrees with tf.GradientTape."""


def sigmoid(x):
    return 1.0 / (1.0 + tf.exp(-x))


def forward(w: tf.Tensor, net: ToyNet) -> dict[str, tf.Tensor]:
    """The forward pass and loss at weights `w` (float64 vector w1..w8)."""
    w1, w2, w3, w4, w5, w6, w7, w8 = tf.unstack(w)
    h1 = w1 * net.i1 + w2 * net.i2 + net.b1
    h2 = w3 * net.i1 + w4 * net.i2 + net.b1
    a_h1, a_h2 = sigmoid(h1), sigmoid(h2)
    o1 = w5 * a_h1 + w6 * a_h2 + net.b2
    o2 = w7 * a_h1 + w8 * a_h2 + net.b2
    a_o1, a_o2 = sigmoid(o1), sigmoid(o2)
    E1 = 0.5 * (net.t1 - a_o1) ** 2
    E2 = 0.5 * (net.t2 - a_o2) ** 2
    return dict(h1=h1, h2=h2, a_h1=a_h1, a_h2=a_h2, o1=o1, o2=o2,
                a_o1=a_o1, a_o2=a_o2, E1=E1, E2=E2, E_total=E1 + E2)


def hand_gradients(w: tf.Tensor, f: Mapping[str, tf.Tensor], net: ToyNet) -> tf.Tensor:
    """dE_total/dw1..dw8 by the chain rule, as written in docs/backprop.md."""
    w1, w2, w3, w4, w5, w6, w7, w8 = tf.unstack(w)
    # Output layer: delta_o = dE_total/da_o * da_o/do.
    delta_o1 = (f["a_o1"] - net.t1) * f["a_o1"] * (1.0 - f["a_o1"])
    delta_o2 = (f["a_o2"] - net.t2) * f["a_o2"] * (1.0 - f["a_o2"])
    dE_dw5 = delta_o1 * f["a_h1"]
    dE_dw6 = delta_o1 * f["a_h2"]
    dE_dw7 = delta_o2 * f["a_h1"]
    dE_dw8 = delta_o2 * f["a_h2"]
    # Hidden layer: a_h1 feeds o1 through w5 and o2 through w7; a_h2 through w6 and w8.
    delta_h1 = (delta_o1 * w5 + delta_o2 * w7) * f["a_h1"] * (1.0 - f["a_h1"])
    delta_h2 = (delta_o1 * w6 + delta_o2 * w8) * f["a_h2"] * (1.0 - f["a_h2"])
    dE_dw1 = delta_h1 * net.i1
    dE_dw2 = delta_h1 * net.i2
    dE_dw3 = delta_h2 * net.i1
    dE_dw4 = delta_h2 * net.i2
    return tf.stack([dE_dw1, dE_dw2, dE_dw3, dE_dw4, dE_dw5, dE_dw6, dE_dw7, dE_dw8])


def tape_gradients(w: tf.Tensor, net: ToyNet) -> tf.Tensor:
    """dE_total/dw1..dw8 by automatic differentiation of the same forward pass."""
    with tf.GradientTape() as tape:
        tape.watch(w)
        loss = forward(w, net)["E_total"]
    return tape.gradient(loss, w)


def relative_difference(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """|a - b| / max(|a|, |b|) elementwise, 0 where both are 0."""
    scale = tf.maximum(tf.abs(a), tf.abs(b))
    return tf.math.divide_no_nan(tf.abs(a - b), scale)


GradientFn = Callable[[tf.Tensor, Mapping[str, tf.Tensor], ToyNet], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Run:
    """One learning rate's run: `rows` is float64 (steps + 1, len(COLUMNS)); row k
    holds the weights after k updates, the forward pass and gradients at them."""

    lr: float
    rows: np.ndarray
    max_relative_difference: float  # largest |hand - tape| / max(|hand|, |tape|) seen

    def column(self, name: str) -> np.ndarray:
        return self.rows[:, COLUMNS.index(name)]

    def first_step_below(self, threshold: float) -> int | None:
        """First step whose E_total is below `threshold`, or None."""
        below = np.flatnonzero(self.column("E_total") < threshold)
        return int(below[0]) if below.size else None


def gradient_descent(net: ToyNet, lr: float, steps: int, gradient_fn: GradientFn | None = None) -> Run:
    """Runs `steps` gradient-descent updates at learning rate `lr`.

    Raises GradientMismatchError at the first step where `gradient_fn` (the hand
    gradients unless a test injects a wrong one) and the tape disagree by more
    than GRADIENT_RTOL relative; toynet.SettingError for a learning rate that is not a
    finite number > 0 or steps not an integer in 0..toynet.MAX_STEPS (0: the setting's
    own row, before any update, as the page shows it first).
    """
    check_field("lr", lr)
    if not (type(steps) is int and steps == 0):
        check_steps(steps)
    run = _compiled_run(net, gradient_fn or hand_gradients)
    rows, rel, tape = (t.numpy() for t in run(
        tf.constant(net.weights, tf.float64), tf.constant(lr, tf.float64),
        tf.constant(steps)))
    _check_gradients(lr, rows, rel, tape)
    steps_col = np.arange(steps + 1, dtype=np.float64)[:, None]
    rows = np.concatenate([np.full_like(steps_col, lr), steps_col, rows], axis=1)
    return Run(lr=lr, rows=rows, max_relative_difference=float(rel.max()))


@functools.lru_cache(maxsize=16)
def _compiled_run(net: ToyNet, gradient_fn: GradientFn):
    """One traced graph per (network, gradient formula): the whole run in a tf.scan."""

    @tf.function
    def run(w0, lr, n):
        def step(carry, _):
            w = carry[0]
            f = forward(w, net)
            hand = gradient_fn(w, f, net)
            tape = tape_gradients(w, net)
            row = tf.concat([w, tf.stack([f[k] for k in FORWARD_NAMES]), hand], 0)
            return w - lr * hand, row, relative_difference(hand, tape), tape

        init = (w0, tf.zeros([len(COLUMNS) - 2], tf.float64),
                tf.zeros([8], tf.float64), tf.zeros([8], tf.float64))
        return tf.scan(step, tf.range(n + 1), initializer=init)[1:]

    return run


def _check_gradients(lr: float, rows: np.ndarray, rel: np.ndarray, tape: np.ndarray):
    bad = np.argwhere(~(rel <= GRADIENT_RTOL))
    if bad.size:
        step, k = (int(v) for v in bad[0])
        hand = rows[step, len(WEIGHT_NAMES) + len(FORWARD_NAMES) + k]
        raise GradientMismatchError(
            f"lr={lr!r} step {step}: hand-derived dE/d{WEIGHT_NAMES[k]}={hand!r} but "
            f"tf.GradientTape gives {tape[step, k]!r} (relative difference "
            f"{rel[step, k]:.3g} > {GRADIENT_RTOL:g}); the chain-rule formula is wrong")


def sweep(net: ToyNet, lrs: Sequence[float], steps: int,
          gradient_fn: GradientFn | None = None) -> list[Run]:
    """`gradient_descent` at every learning rate, in the order given (the rates and steps
    checked first, as kerasnets-toynet's flags are: toynet.SettingError)."""
    lrs = check_lrs(lrs)
    check_steps(steps)
    return [gradient_descent(net, lr, steps, gradient_fn) for lr in lrs]

"""The 2-2-2 network: forward pass and loss against independent numbers, the
hand = tape check at every step, finite differences, and a mutation check."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.backprop import chain_rule

DEFAULT_LRS = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0)


def plain_loss(w, i1=0.05, i2=0.1, t1=0.01, t2=0.99, b1=0.0, b2=0.0):
    """E_total in plain Python floats: the independent witness."""
    s = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    a_h1 = s(w[0] * i1 + w[1] * i2 + b1)
    a_h2 = s(w[2] * i1 + w[3] * i2 + b1)
    a_o1 = s(w[4] * a_h1 + w[5] * a_h2 + b2)
    a_o2 = s(w[6] * a_h1 + w[7] * a_h2 + b2)
    return 0.5 * (t1 - a_o1) ** 2 + 0.5 * (t2 - a_o2) ** 2


def central_differences(w, h=1e-5, **net):
    grads = []
    for k in range(8):
        up, down = list(w), list(w)
        up[k] += h
        down[k] -= h
        grads.append((plain_loss(up, **net) - plain_loss(down, **net)) / (2 * h))
    return np.array(grads)


def test_forward_pass_at_the_defaults():
    # Worked by hand with Python floats (README and docs/backprop.md show the steps):
    # h1 = 0.15*0.05 + 0.2*0.1, h2 = 0.25*0.05 + 0.3*0.1, a = 1/(1+e^-x).
    expected = dict(h1=0.0275, h2=0.0425, a_h1=0.5068745667645342, a_h2=0.5106234010049637,
                    o1=0.4325303571580474, o2=0.5342801539349972, a_o1=0.606477732206728,
                    a_o2=0.6304808354506348, E_total=0.24251985734837728)
    f = chain_rule.forward(tf.constant(chain_rule.ToyNet().weights, tf.float64), chain_rule.ToyNet())
    for name, value in expected.items():
        assert float(f[name]) == pytest.approx(value, rel=1e-14), name
    assert float(f["E1"]) == pytest.approx(0.5 * (0.01 - 0.606477732206728) ** 2, rel=1e-14)


def test_classic_worked_example_with_fixed_biases():
    # Matt Mazur's published "step by step backpropagation example" (b1=0.35,
    # b2=0.6, lr=0.5): E_total = 0.298371109 and the weights after one update,
    # quoted to the 8-9 digits the article prints.
    net = chain_rule.ToyNet(b1=0.35, b2=0.6)
    run = chain_rule.gradient_descent(net, lr=0.5, steps=1)
    assert run.column("E_total")[0] == pytest.approx(0.298371109, abs=5e-10)
    assert run.column("dE_dw5")[0] == pytest.approx(0.082167041, abs=5e-10)
    published = [0.149780716, 0.19956143, 0.24975114, 0.29950229,
                 0.35891648, 0.408666186, 0.511301270, 0.561370121]
    after = [run.column(w)[1] for w in chain_rule.WEIGHT_NAMES]
    np.testing.assert_allclose(after, published, rtol=0, atol=5e-9)


@pytest.mark.parametrize("lr", DEFAULT_LRS)
def test_hand_equals_tape_at_every_step(lr):
    run = chain_rule.gradient_descent(chain_rule.ToyNet(), lr, steps=100)
    assert run.rows.shape == (101, len(chain_rule.COLUMNS))
    # gradient_descent() already raises above 1e-10; the margin is what the arithmetic gives.
    assert run.max_relative_difference < 1e-12


@pytest.mark.parametrize("step", [0, 1, 50, 100])
def test_finite_differences_are_a_third_witness(step):
    run = chain_rule.gradient_descent(chain_rule.ToyNet(), 0.5, steps=100)
    w = [run.column(name)[step] for name in chain_rule.WEIGHT_NAMES]
    hand = np.array([run.column(g)[step] for g in chain_rule.GRADIENT_NAMES])
    np.testing.assert_allclose(hand, central_differences(w), rtol=1e-7, atol=0)


def test_update_rule_is_plain_gradient_descent_on_all_eight_weights():
    run = chain_rule.gradient_descent(chain_rule.ToyNet(), 0.8, steps=5)
    w = run.rows[:, 2:10]
    g = np.stack([run.column(name) for name in chain_rule.GRADIENT_NAMES], axis=1)
    np.testing.assert_array_equal(w[1:], w[:-1] - 0.8 * g[:-1])
    assert list(run.column("step")) == [0, 1, 2, 3, 4, 5]
    assert set(run.column("lr")) == {0.8}


def _slip_in_dw3(w, f, net):
    """The common slip: a_h1 (not a_h2) in dE/dw3."""
    g = chain_rule.hand_gradients(w, f, net)
    wrong = g[2] / (f["a_h2"] * (1 - f["a_h2"])) * f["a_h1"] * (1 - f["a_h1"])
    return tf.tensor_scatter_nd_update(g, [[2]], [wrong])


def test_a_wrong_gradient_formula_fails_loudly():
    with pytest.raises(chain_rule.GradientMismatchError, match=r"lr=0\.5 step 0: .*dE/dw3"):
        chain_rule.gradient_descent(chain_rule.ToyNet(), 0.5, steps=3, gradient_fn=_slip_in_dw3)


def test_the_slip_is_too_small_for_a_loose_tolerance():
    w = tf.constant(chain_rule.ToyNet().weights, tf.float64)
    f = chain_rule.forward(w, chain_rule.ToyNet())
    rel = chain_rule.relative_difference(_slip_in_dw3(w, f, chain_rule.ToyNet()),
                                       chain_rule.tape_gradients(w, chain_rule.ToyNet()))
    assert 2.5e-4 < float(rel[2]) < 2.7e-4  # under 1e-3, over our 1e-10
    assert float(tf.reduce_max(tf.tensor_scatter_nd_update(rel, [[2]], [0.0]))) < 1e-14


def test_sweep_keeps_the_order_and_lower_lrs_learn_slower():
    runs = chain_rule.sweep(chain_rule.ToyNet(), DEFAULT_LRS, steps=100)
    assert [r.lr for r in runs] == list(DEFAULT_LRS)
    final = [r.column("E_total")[-1] for r in runs]
    assert final == sorted(final, reverse=True)
    assert runs[2].first_step_below(0.05) == 63 and runs[0].first_step_below(0.05) is None

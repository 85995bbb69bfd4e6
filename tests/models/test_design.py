"""The design card against arithmetic done elsewhere: the course's receptive-field chain
worked out by hand here for the built-in models, parameters and multiply-accumulates by
hand and by Keras, multiply-accumulates counted one by one in a NumPy convolution that
reproduces Keras's output; and the layers and models whose receptive field it must not
guess."""

import itertools
import json
import math

import keras
import numpy as np
import pytest
from kerasnets.models import convnets, design


def test_the_seed_models_receptive_field_as_the_course_works_it_out():
    # r_out = r_in + (k - 1) * j_in, j_out = j_in * s, for each conv and pool in order
    r, j, expected = 1, 1, []
    for k, s in [(3, 1), (3, 1), (2, 2), (3, 1), (3, 1), (3, 1)]:  # conv conv pool conv conv conv
        r, j = r + (k - 1) * j, j * s
        expected.append((r, j))
    assert expected == [(3, 1), (5, 1), (6, 2), (10, 2), (14, 2), (18, 2)]
    card = design.card(convnets.build_model("seed"))
    steps = [(row["receptive_field"], row["jump"]) for row in card["layers"]
             if row["kind"] in ("Conv2D", "MaxPooling2D")]
    assert steps == expected
    assert (card["receptive_field"], card["covers_digit"]) == (18, False)
    # MACs by hand: five 3x3 convs and two dense layers
    by_hand = (26 * 26 * 16 * 9 * 1 + 24 * 24 * 16 * 9 * 16 + 10 * 10 * 16 * 9 * 16
               + 8 * 8 * 16 * 9 * 16 + 6 * 6 * 64 * 9 * 16 + 64 * 32 + 32 * 10)
    assert card["macs"] == by_hand == 2_136_448


def walk(steps):
    """The course's arithmetic over (kernel, stride) steps from r = j = 1 at the input:
    r_out = r_in + (k - 1) * j_in, j_out = j_in * s. A layer that keeps every pixel where it
    is counts as (1, 1)."""
    r, j, out = 1, 1, []
    for k, s in steps:
        r, j = r + (k - 1) * j, j * s
        out.append((r, j))
    return out


KEEP, CONV, POOL = (1, 1), (3, 1), (2, 2)
BLUR = [(2, 1), (3, 2)]  # blur_pool: the 2x2 max at stride 1, then the 3x3 blur at stride 2
BLOCK = [CONV, KEEP, KEEP]  # conv, BatchNorm, ReLU
# Every layer with a spatial output, in order, written out from convnets.py by hand.
SPATIAL_STEPS = {
    # normalize, conv+BN twice, pool, dropout, then (conv, BN, dropout) twice, conv, BN
    "seed": [KEEP, CONV, KEEP, CONV, KEEP, POOL, KEEP, CONV, KEEP, KEEP, CONV, KEEP, KEEP,
             CONV, KEEP],
    "default": [KEEP, *BLOCK, *BLOCK, *BLUR, *BLOCK, *BLOCK, *BLUR, *BLOCK],
    # normalize, space-to-depth of 2x2 blocks (as a 2x2 conv at stride 2), two blocks, the
    # max-pool, two blocks
    "fast": [KEEP, (2, 2), *BLOCK, *BLOCK, POOL, *BLOCK, *BLOCK],
}


@pytest.mark.parametrize("name", sorted(SPATIAL_STEPS))
def test_every_spatial_layers_receptive_field_and_jump_by_hand(name):
    expected = walk(SPATIAL_STEPS[name])
    rows = design.card(convnets.build_model(name))["layers"]
    spatial = [row for row in rows if row["receptive_field"] is not None]
    assert [(row["receptive_field"], row["jump"]) for row in spatial] == expected
    after = rows[rows.index(spatial[-1]) + 1:]
    assert after and all(row["receptive_field"] is row["jump"] is None
                         and row["note"] == design.NOT_SPATIAL for row in after)
    # the fields convnets.py's comments give are among them (default's blur pools also
    # pass through 6 and 18 between their max and their blur)
    comments = {"seed": [3, 5, 6, 10, 14, 18], "default": [3, 5, 8, 12, 16, 22, 30],
                "fast": [2, 6, 10, 12, 20, 28]}[name]
    assert set(comments) <= {r for r, _ in expected}


def test_the_seed_models_counts_by_hand():
    card = design.card(convnets.build_model("seed"))
    convs = [(1, 16), (16, 16), (16, 16), (16, 16), (16, 64)]
    dense = [(64, 32), (32, 10)]
    batch_norms = [16, 16, 16, 16, 64, 32]  # gamma and beta trainable, the moving pair not
    trainable = (sum(9 * i * o + o for i, o in convs) + sum(i * o + o for i, o in dense)
                 + sum(2 * c for c in batch_norms))
    assert card["trainable_params"] == trainable == 19_130
    assert card["params"] == trainable + sum(2 * c for c in batch_norms)
    sides = [26, 24, 10, 8, 6]  # each conv's output, valid 3x3: 28 -> 26 -> 24, pool, 12 -> 10 ...
    macs = [s * s * o * 9 * i for s, (i, o) in zip(sides, convs)] + [i * o for i, o in dense]
    assert [row["macs"] for row in card["layers"] if row["macs"]] == macs
    assert design.budget_problem(card, 8000) == (
        "seed has 19,130 trainable parameters, over --max_params=8,000")
    assert design.budget_problem(card, 19_130) is None


def test_the_frozen_blur_counts_in_all_but_not_against_the_budget():
    card = design.card(convnets.build_model("default"))
    blurs = [row for row in card["layers"] if row["kind"] == "DepthwiseConv2D"]
    assert [(row["params"], row["trainable_params"]) for row in blurs] == [(16 * 9, 0)] * 2
    assert card["trainable_params"] == sum(row["trainable_params"] for row in card["layers"])
    assert card["params"] == sum(row["params"] for row in card["layers"])


# Each conv block's receptive field as kerasnets.serving.inside reads it from the LiteRT
# file's ops (tests/serving/test_inside.py), and as convnets.py's comments give it.
BLOCKS = {"seed": [3, 5, 10, 14, 18], "default": [3, 5, 12, 16, 30],
          "wide": [3, 5, 12, 16, 30], "fast": [6, 10, 20, 28]}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_every_built_in_card_against_keras_counts_and_the_block_fields(name):
    model = convnets.build_model(name)
    card = design.card(model)
    assert json.loads(json.dumps(card)) == card  # plain JSON: kerasnets-design --json
    layers = model.layers
    assert [row["name"] for row in card["layers"]] == [layer.name for layer in layers]
    assert [row["params"] for row in card["layers"]] == [layer.count_params() for layer in layers]
    assert (card["trainable_params"], card["params"] - card["trainable_params"]) == \
        convnets.count_params(model)
    assert card["params"] == model.count_params()
    blocks = [row["receptive_field"] for row in card["layers"] if row["kind"] == "ReLU"] or [
        row["receptive_field"] for row in card["layers"] if row["kind"] == "FusedBatchNorm"
        and len(row["output_shape"]) == 4]  # seed: conv (ReLU inside) then BatchNorm
    assert blocks == BLOCKS[name]
    assert card["covers_digit"] is (BLOCKS[name][-1] >= 28)


def test_the_fast_models_space_to_depth_stem_is_recognised_from_its_shapes():
    card = design.card(convnets.build_model("fast"))
    stem = card["layers"][1:4]
    assert [row["note"] for row in stem] == [design.SPACE_TO_DEPTH] * 2 + [None]
    assert (stem[2]["receptive_field"], stem[2]["jump"]) == (2, 2)
    # another Reshape is not guessed at: unknown from there on
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Reshape((14, 56, 1)),
                              keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10, activation="softmax")])
    rows = design.card(model)["layers"]
    assert rows[0]["note"] == design.UNKNOWN and rows[1]["receptive_field"] is None
    assert design.card(model)["covers_digit"] is None


def space_to_depth_model(side, block, channels, dims=None):
    split = (side // block, block, side // block, block) + ((channels,) if channels > 1 else ())
    dims = dims or ((1, 3, 2, 4, 5) if channels > 1 else (1, 3, 2, 4))
    return keras.Sequential([keras.Input((side, side, channels)), keras.layers.Reshape(split),
                             keras.layers.Permute(dims),
                             keras.layers.Reshape((side // block, side // block,
                                                   channels * block * block))])


@pytest.mark.parametrize("block, channels", [(2, 1), (2, 3), (4, 1)])
def test_space_to_depth_is_what_the_card_takes_it_for(block, channels):
    side = 8
    model = space_to_depth_model(side, block, channels)
    rows = design.card(model)["layers"]
    assert [row["note"] for row in rows] == [design.SPACE_TO_DEPTH] * 2 + [None]
    assert (rows[2]["receptive_field"], rows[2]["jump"]) == (block, block)
    # each output pixel (i, j) holds exactly the input's block at (block*i, block*j): a
    # block x block window at stride block, as the card counts it
    codes = np.arange(side * side * channels, dtype="float32").reshape(1, side, side, channels)
    out = np.asarray(model(codes))[0].astype(int)
    for i, j in itertools.product(range(side // block), repeat=2):
        pixels = {(code // channels // side, code // channels % side) for code in out[i, j]}
        assert pixels == {(block * i + a, block * j + b)
                          for a, b in itertools.product(range(block), repeat=2)}


def test_a_permutation_of_the_same_shapes_is_not_taken_for_space_to_depth():
    model = space_to_depth_model(8, 2, 1, dims=(3, 1, 2, 4))  # the block grid transposed
    card = design.card(model)
    assert [row["note"] for row in card["layers"]] == [design.UNKNOWN, None, None]
    assert card["receptive_field"] is None and card["covers_digit"] is None


def test_a_functional_chain_is_walked_and_images_without_a_channel_axis_too():
    inputs = keras.Input((28, 28))
    x = keras.layers.Reshape((28, 28, 1))(inputs)
    x = keras.layers.Conv2D(4, 5, strides=2)(x)
    x = keras.layers.MaxPooling2D(3)(x)
    x = keras.layers.Dense(6)(x)  # on each pixel's channels: a 1x1 convolution
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    card = design.card(keras.Model(inputs, outputs))
    assert [row["receptive_field"] for row in card["layers"]] == [1, 5, 5 + 2 * 2, 9, None, None]
    assert [row["jump"] for row in card["layers"]][:4] == [1, 2, 6, 6]
    # 28 -> (28 - 5) // 2 + 1 = 12 -> 12 // 3 = 4: 4x4 pixels of 4 channels into 6
    assert card["layers"][3]["macs"] == 4 * 4 * 4 * 6 and card["receptive_field"] == 9


@pytest.mark.parametrize("mixing, notes", [
    ([keras.Input((28, 28, 1)), keras.layers.Conv2D(3, 3), keras.layers.Softmax(axis=1)],
     [None, design.UNKNOWN]),
    ([keras.Input((28, 28)), keras.layers.Dense(28), keras.layers.Reshape((28, 28, 1))],
     [design.UNKNOWN, None]),
    ([keras.Input((28, 28)), keras.layers.Activation("softmax"),
      keras.layers.Reshape((28, 28, 1))], [design.UNKNOWN, None]),
], ids=["softmax over rows", "dense along rows", "softmax along rows"])
def test_a_layer_that_mixes_positions_is_not_taken_for_an_elementwise_one(mixing, notes):
    card = design.card(keras.Sequential(mixing))
    assert [row["note"] for row in card["layers"]] == notes
    assert card["layers"][-1]["receptive_field"] is None and card["covers_digit"] is None


def test_axes_that_differ_are_not_folded_into_one_number():
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, (3, 1)),
                              keras.layers.Conv2D(4, 3), keras.layers.GlobalMaxPooling2D(),
                              keras.layers.Dense(10)])
    card = design.card(model)
    assert [(r["receptive_field"], r["note"]) for r in card["layers"][:2]] == [
        (None, design.AXES), (None, None)]
    assert card["covers_digit"] is None
    assert card["layers"][0]["macs"] == 26 * 28 * 4 * 3 * 1


def test_a_model_not_built_on_an_input_is_one_error():
    with pytest.raises(design.DesignCardError, match="has no defined input and output"):
        design.card(keras.Sequential([keras.layers.Dense(10)]))


def test_a_layer_the_card_cannot_account_for_is_marked_never_guessed():
    class Blur(keras.layers.Layer):  # a spatial op the card knows nothing about
        def call(self, x):
            return x

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3), Blur(),
                              keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    card = design.card(model)
    assert [(r["receptive_field"], r["note"]) for r in card["layers"]] == [
        (3, None), (None, design.UNKNOWN), (None, None), (None, design.NOT_SPATIAL),
        (None, design.NOT_SPATIAL)]
    assert (card["receptive_field"], card["covers_digit"]) == (None, None)
    text = design.format_card(card)
    assert f"blur: {design.UNKNOWN}" in text and "which is unknown" in text


def test_a_layer_with_weights_the_card_cannot_count_is_said_so():
    class Scale(keras.layers.Layer):  # one learned factor, after the spatial part
        def build(self, input_shape):
            self.factor = self.add_weight(shape=(), initializer="ones")

        def call(self, x):
            return x * self.factor

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 3),
                              keras.layers.GlobalAveragePooling2D(), Scale(name="scale"),
                              keras.layers.Dense(10)])
    card = design.card(model)
    scale = card["layers"][2]
    assert (scale["params"], scale["macs"], scale["receptive_field"]) == (1, 0, None)
    assert scale["note"] == f"{design.MACS_UNCOUNTED}; {design.NOT_SPATIAL}"
    assert card["receptive_field"] == 3 and card["covers_digit"] is False
    row = next(line for line in design.format_card(card).splitlines() if line.startswith("scale"))
    assert row.split()[-3:] == ["-", "-", "*"]


def test_a_branched_model_gets_its_counts_but_no_receptive_fields():
    inputs = keras.Input((28, 28, 1))
    a = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    b = keras.layers.Conv2D(4, 5, padding="same")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    card = design.card(model)
    assert all(r["receptive_field"] is None for r in card["layers"])
    assert card["macs"] == 28 * 28 * 4 * (9 + 25) + 4 * 10
    assert card["params"] == model.count_params() and card["covers_digit"] is None


def test_the_budget_and_the_table():
    card = design.card(convnets.build_model("default"))
    assert design.budget_problem(card, 8000) is None
    assert design.budget_problem(card, 7825) == (
        "default has 7,826 trainable parameters, over --max_params=7,825")
    text = design.format_card(card)
    assert "default: 7,826 trainable parameters (8,250 in all), 1,120,152 multiply-accumulates" in text
    assert text.endswith("receptive field of the last spatial layer: 30x30, which covers the "
                         "28x28 digit")
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "kind", "output", "shape", "params", "trainable",
                                "MACs", "RF", "jump"]
    first_conv = next(line for line in lines if line.startswith("conv2d"))
    assert first_conv.split()[1:] == ["Conv2D", "26x26x8", "72", "72", "48,672", "3", "1"]
    assert first_conv.index("48,672") + len("48,672") == lines[0].index("MACs") + len("MACs")
    seed = design.format_card(design.card(convnets.build_model("seed")))
    assert seed.endswith("18x18, which does not cover the 28x28 digit (18 < 28)")


# --- multiply-accumulates, counted one multiplication at a time -----------------------

def same_padding(size, kernel, stride):
    """TensorFlow's SAME padding (before, after) of one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def counted_conv(x, kernel, strides, dilation, padding, groups):
    """A grouped 2-D convolution of one image by explicit loops: (output, multiplications)."""
    k_h, k_w, per_group, out_c = kernel.shape
    eff = [(k - 1) * d + 1 for k, d in zip((k_h, k_w), dilation)]
    if padding == "same":
        pads = [same_padding(n, e, s) for n, e, s in zip(x.shape[:2], eff, strides)]
        x = np.pad(x, (*pads, (0, 0)))
    out_h = (x.shape[0] - eff[0]) // strides[0] + 1
    out_w = (x.shape[1] - eff[1]) // strides[1] + 1
    out, count = np.zeros((out_h, out_w, out_c)), 0
    per_out = out_c // groups
    for i, j, o in itertools.product(range(out_h), range(out_w), range(out_c)):
        g = o // per_out
        for a, b, c in itertools.product(range(k_h), range(k_w), range(per_group)):
            out[i, j, o] += (x[i * strides[0] + a * dilation[0], j * strides[1] + b * dilation[1],
                               g * per_group + c] * kernel[a, b, c, o])
            count += 1
    return out, count


def counted_depthwise(x, kernel, strides, dilation, padding):
    """Depthwise: each input channel by its own `multiplier` filters."""
    k_h, k_w, in_c, multiplier = kernel.shape
    outs, count = [], 0
    for c in range(in_c):
        full = kernel[:, :, c:c + 1, :]
        out, n = counted_conv(x[..., c:c + 1], full, strides, dilation, padding, 1)
        outs.append(out)
        count += n
    return np.concatenate(outs, axis=-1), count


def random_layer(rng):
    kind = rng.choice(["conv", "depthwise", "separable", "dense"])
    if kind == "dense":
        return keras.layers.Dense(int(rng.integers(1, 7)))
    kernel = int(rng.integers(1, 4))
    padding = str(rng.choice(["valid", "same"]))
    dilation = int(rng.integers(1, 3))
    strides = 1 if dilation > 1 else int(rng.integers(1, 3))  # Keras: not both above 1
    common = dict(kernel_size=kernel, strides=strides, dilation_rate=dilation, padding=padding)
    if kind == "conv":
        groups = int(rng.choice([1, 2]))
        return keras.layers.Conv2D(2 * int(rng.integers(1, 4)), groups=groups, **common)
    if kind == "depthwise":
        return keras.layers.DepthwiseConv2D(depth_multiplier=int(rng.integers(1, 3)), **common)
    return keras.layers.SeparableConv2D(int(rng.integers(1, 5)),
                                        depth_multiplier=int(rng.integers(1, 3)), **common)


@pytest.mark.parametrize("seed", range(12))
def test_macs_equal_the_multiplications_of_a_numpy_convolution(seed):
    rng = np.random.default_rng(seed)
    layer = random_layer(rng)
    size, channels = int(rng.integers(5, 9)), 2 * int(rng.integers(1, 3))
    shape = (size, size, channels)
    if isinstance(layer, keras.layers.Dense):  # on a 2-D batch, or on each of several rows
        shape = (channels * 3,) if seed % 2 else (int(rng.integers(1, 4)), channels * 3)
    model = keras.Sequential([keras.Input(shape), layer])
    x = rng.normal(size=(1, *shape)).astype("float32")
    want = np.asarray(model(x))[0]
    common = {}
    if not isinstance(layer, keras.layers.Dense):
        common = dict(strides=layer.strides, dilation=layer.dilation_rate, padding=layer.padding)
    if isinstance(layer, keras.layers.Dense):
        w, b = (np.asarray(v) for v in layer.weights)
        rows = x[0].reshape(-1, w.shape[0])
        got, count = np.zeros((len(rows), w.shape[1])), 0
        for r, o, i in itertools.product(range(len(rows)), range(w.shape[1]), range(w.shape[0])):
            got[r, o] += rows[r, i] * w[i, o]
            count += 1
        got = (got + b).reshape(want.shape)
    elif isinstance(layer, keras.layers.SeparableConv2D):
        depthwise, pointwise, bias = (np.asarray(v) for v in layer.weights)
        inner, n1 = counted_depthwise(x[0], depthwise, **common)
        got, n2 = counted_conv(inner, pointwise, (1, 1), (1, 1), "valid", 1)
        got, count = got + bias, n1 + n2
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel, bias = (np.asarray(v) for v in layer.weights)
        got, count = counted_depthwise(x[0], kernel, **common)
        got = got + bias
    else:
        kernel, bias = (np.asarray(v) for v in layer.weights)
        got, count = counted_conv(x[0], kernel, **common, groups=layer.groups)
        got = got + bias
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # it is the layer's convolution
    card = design.card(model)
    assert card["macs"] == count, layer.get_config()
    assert card["params"] == layer.count_params() == by_hand_params(layer, shape[-1])


def by_hand_params(layer, in_c):
    """Weights and biases from the layer's configuration."""
    if isinstance(layer, keras.layers.Dense):
        return in_c * layer.units + layer.units
    k = math.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.SeparableConv2D):
        inner = in_c * layer.depth_multiplier
        return k * inner + inner * layer.filters + layer.filters
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return (k + 1) * in_c * layer.depth_multiplier
    return k * in_c // layer.groups * layer.filters + layer.filters

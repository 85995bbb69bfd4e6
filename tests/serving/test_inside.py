"""kerasnets.serving.inside on every model of the package: the feature maps read from the LiteRT file
are the Keras model's conv blocks after their ReLU, and the layer table's receptive fields
are those kerasnets.models.convnets documents."""

import numpy as np
import pytest
from kerasnets.models import convnets
from kerasnets.serving import export, inside

# Receptive field of each conv block's output, in input pixels (kerasnets/models/convnets.py).
RECEPTIVE_FIELDS = {"seed": [3, 5, 10, 14, 18], "default": [3, 5, 12, 16, 30],
                    "wide": [3, 5, 12, 16, 30], "fast": [6, 10, 20, 28]}


def conv_block_outputs(model) -> list:
    """Each conv block's output after its ReLU: a ReLU layer's, or a Conv2D's own ReLU."""
    import keras

    return [layer.output for layer in model.layers
            if isinstance(layer, keras.layers.ReLU)
            or (isinstance(layer, keras.layers.Conv2D)
                and getattr(layer.activation, "__name__", "") == "relu")]


@pytest.mark.parametrize("name", sorted(RECEPTIVE_FIELDS))
def test_each_models_conv_blocks_and_receptive_fields(name, real_mnist, tmp_path):
    import keras

    model = convnets.build_model(name)  # untrained: its maps are what its weights make them
    version = export.export_version(model, str(tmp_path / "mnist"),
                                    formats=("saved_model", "litert"))
    view = inside.Inside(version)
    convs = [row for row in view.layers if row["op"] == "CONV_2D"]
    assert [row["receptive_field"] for row in convs] == RECEPTIVE_FIELDS[name]
    (_, _), (x_test, _) = real_mnist[0]
    probe = keras.Model(model.inputs, conv_block_outputs(model))
    for digit in x_test[:3]:
        expected = probe([np.asarray(digit, np.float32)[None, ..., None]])  # its one input
        got = view.feature_maps(digit)
        assert len(got) == len(expected) == len(RECEPTIVE_FIELDS[name])
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, np.transpose(np.asarray(e)[0], (2, 0, 1)),
                                       rtol=0, atol=1e-5)
    seen = view.look(x_test[0])
    np.testing.assert_allclose(seen["probabilities"], model.predict(
        x_test[:1, ..., None], verbose=0)[0], atol=1e-5)
    assert np.asarray(seen["saliency"]["values"]).shape == (28, 28)


def test_occlusion_blanks_each_square_and_averages_the_drops():
    digit = np.zeros((28, 28), np.uint8)
    digit[10:14, 10:14] = 255
    batch = inside.occlusions(digit)
    assert batch.shape == (1 + 25 * 25, 28, 28) and np.array_equal(batch[0], digit)
    assert batch[1 + 10 * 25 + 10].max() == 0      # the square at (10, 10) covers all the ink
    # A model whose answer's log-odds fall by 1 exactly when the square at (10, 10) is blanked:
    probabilities = np.full((len(batch), 10), 0.05)
    probabilities[:, 3] = 0.55
    odds = np.log(0.55 / 0.45)
    low = 1 / (1 + np.exp(-(odds - 1)))
    probabilities[1 + 10 * 25 + 10, 3] = low
    probabilities[1 + 10 * 25 + 10, :3] = (1 - low) / 9
    probabilities[1 + 10 * 25 + 10, 4:] = (1 - low) / 9
    saliency = inside.saliency(probabilities, 3)
    assert saliency[10, 10] == pytest.approx(1 / 16)   # 16 squares cover (10, 10); one fell
    assert saliency[0, 0] == 0 and saliency[27, 27] == 0

"""The tf.data pipeline: shapes, dtypes, seeded epoch order, resume-exact epochs, augmentation."""

import os

import numpy as np
import pytest

from kerasnets.data import pipeline

N = 100


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, 28, 28), dtype=np.uint8)
    images[:, :4] = 0  # a blank border, as MNIST has
    return images, (np.arange(N) % 10).astype(np.uint8)


def epochs_of(ds, batch_size):
    """The dataset's labels, grouped into epochs of N."""
    labels = np.concatenate([y for _, y in ds.as_numpy_iterator()])
    return labels.reshape(-1, N)


def test_batches_shapes_and_dtypes(tiny):
    ds = pipeline.train_dataset(*tiny, batch_size=32, epochs=2)
    batches = list(ds.as_numpy_iterator())
    assert [len(y) for _, y in batches] == [32, 32, 32, 4] * 2
    assert pipeline.steps_per_epoch(N, 32) == 4
    x, y = batches[0]
    assert x.shape == (32, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.uint8


def test_each_epoch_is_a_seeded_permutation_that_differs_by_epoch(tiny):
    a = epochs_of(pipeline.train_dataset(*tiny, batch_size=32, seed=1, epochs=3), 32)
    b = epochs_of(pipeline.train_dataset(*tiny, batch_size=32, seed=1, epochs=3), 32)
    c = epochs_of(pipeline.train_dataset(*tiny, batch_size=32, seed=2, epochs=3), 32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    for epoch in a:
        assert np.bincount(epoch).tolist() == [10] * 10  # every example once


def test_a_run_resumed_at_epoch_k_sees_the_same_batches(tiny):
    full = list(pipeline.train_dataset(*tiny, batch_size=32, seed=3, epochs=3,
                                       augment=pipeline.Augment()).as_numpy_iterator())
    resumed = list(pipeline.train_dataset(*tiny, batch_size=32, seed=3, first_epoch=2, epochs=3,
                                          augment=pipeline.Augment()).as_numpy_iterator())
    assert len(resumed) == 4
    for (xf, yf), (xr, yr) in zip(full[8:], resumed):
        np.testing.assert_array_equal(xf, xr)
        np.testing.assert_array_equal(yf, yr)


def test_augmentation_changes_images_keeps_labels_and_is_seeded(tiny):
    plain = list(pipeline.train_dataset(*tiny, batch_size=N, seed=4).as_numpy_iterator())[0]
    aug = list(pipeline.train_dataset(*tiny, batch_size=N, seed=4,
                                      augment=pipeline.Augment(rotation=15, shift=2, scale=0.1))
               .as_numpy_iterator())[0]
    again = list(pipeline.train_dataset(*tiny, batch_size=N, seed=4,
                                        augment=pipeline.Augment(rotation=15, shift=2, scale=0.1))
                 .as_numpy_iterator())[0]
    np.testing.assert_array_equal(plain[1], aug[1])
    changed = np.mean(np.any(plain[0] != aug[0], axis=(1, 2, 3)))
    assert changed == 1.0 and aug[0].dtype == np.uint8
    np.testing.assert_array_equal(aug[0], again[0])


def test_epochs_from_until_epoch_on_are_clean_and_earlier_ones_unchanged(tiny):
    """Augmentation annealing: epochs 0..1 warped exactly as without until_epoch, epoch 2 clean."""
    def run(augment):
        return list(pipeline.train_dataset(*tiny, batch_size=N, seed=5, epochs=3,
                                           augment=augment).as_numpy_iterator())
    always, annealed, plain = run(pipeline.Augment()), run(pipeline.Augment(until_epoch=2)), run(None)
    for epoch in (0, 1):
        np.testing.assert_array_equal(annealed[epoch][0], always[epoch][0])
        assert np.all(np.any(annealed[epoch][0] != plain[epoch][0], axis=(1, 2, 3)))
    np.testing.assert_array_equal(annealed[2][0], plain[2][0])
    np.testing.assert_array_equal(annealed[2][1], plain[2][1])


def test_zero_augmentation_is_the_identity(tiny):
    x = tiny[0][:8, :, :, None]
    out = pipeline.augment_batch(x, pipeline.Augment(rotation=0, shift=0), np.array([1, 2]))
    np.testing.assert_array_equal(out.numpy(), x)


def test_a_pure_shift_moves_pixels_by_whole_steps():
    img = np.zeros((1, 28, 28, 1), np.uint8)
    img[0, 10, 10, 0] = 200
    aug = pipeline.Augment(rotation=0, shift=3)
    out = pipeline.augment_batch(img, aug, np.array([5, 6])).numpy()
    t = pipeline.affine_transforms(img, aug, np.array([5, 6])).numpy()[0]
    # output (x, y) reads input (x + t[2], y + t[5]): the bright pixel lands at (10 - dx, 10 - dy)
    assert int(out.sum()) == pytest.approx(200, abs=2) and abs(t[2]) <= 3 and abs(t[5]) <= 3
    ys, xs = np.nonzero(out[0, :, :, 0] > 0)
    assert np.average(xs, weights=out[0, ys, xs, 0]) == pytest.approx(10 - t[2], abs=0.01)
    assert np.average(ys, weights=out[0, ys, xs, 0]) == pytest.approx(10 - t[5], abs=0.01)


def test_test_dataset_keeps_order(tiny):
    ys = np.concatenate([y for _, y in pipeline.test_dataset(*tiny, 30).as_numpy_iterator()])
    np.testing.assert_array_equal(ys, tiny[1])


def test_bad_augmentation_ranges_are_refused():
    with pytest.raises(ValueError, match="augmentation out of range"):
        pipeline.Augment(rotation=200)


@pytest.mark.parametrize("name, value", [("scale", 0.7), ("scale", -0.1), ("rotation", 181),
                                         ("shift", 14.5), ("shift", float("nan"))])
def test_augment_holds_to_the_recipes_rule_in_its_words(name, value):
    """One range per value: what the recipe refuses, Augment refuses, in the same words
    (scale 0.7 was once accepted here and refused by the recipe)."""
    from kerasnets.training import recipe

    with pytest.raises(recipe.ConfigError) as by_recipe:
        recipe.TrainConfig(**{name: value})
    with pytest.raises(ValueError) as by_augment:
        pipeline.Augment(**{name: value})
    assert str(by_augment.value) == f"augmentation out of range: {by_recipe.value}"
    assert str(by_recipe.value).startswith(f"--{name} must be a number in [0, ")
    with pytest.raises(ValueError, match="until_epoch must be None or an integer >= 0, not -1"):
        pipeline.Augment(until_epoch=-1)
    # the limits themselves are allowed by both
    pipeline.Augment(rotation=180, shift=14, scale=0.5, until_epoch=0)
    recipe.TrainConfig(rotation=180, shift=14, scale=0.5)


def test_both_datasets_run_with_fixed_parallelism_and_no_autotuning(tiny):
    """tf.data's autotuning left about one training process in four at half speed on 2 cores
    (docs/performance.md): the pipeline fixes its parallelism instead."""
    images, labels = tiny
    train, test = pipeline.make_datasets(((images, labels), (images, labels)), batch_size=16,
                                         augment=pipeline.Augment(), epochs=2)
    for ds in (train, test):
        assert ds.options().autotune.enabled is False
    # one batch per core, at least two: what a constant, or a count that ignores the
    # machine, would not give
    assert [pipeline.parallel_batches(n) for n in (None, 1, 2, 3, 16)] == [2, 2, 2, 3, 16]
    assert pipeline.PARALLEL_BATCHES == pipeline.parallel_batches(os.cpu_count())
    assert len(epochs_of(train, 16)) == 2  # and it still yields every batch

import numpy as np
import pytest
import torch

from secfl.attacks.backdoor import PixelTrigger, flip_labels
from secfl.exceptions import ConfigurationError


def test_trigger_stamps_the_bottom_right_square_only(rng):
    x = rng.normal(size=(5, 1, 8, 8)).astype(np.float32)
    stamped = PixelTrigger(target=3, size=2, value=9.0).stamp(x)
    assert np.all(stamped[:, :, 6:, 6:] == 9.0)
    assert np.array_equal(stamped[:, :, :6, :], x[:, :, :6, :]) and np.array_equal(stamped[:, :, :, :6], x[:, :, :, :6])
    assert not np.any(x[:, :, 6:, 6:] == 9.0)  # the input is untouched


def test_poison_relabels_the_stamped_fraction(rng):
    x, y = rng.normal(size=(40, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 40)
    px, py = PixelTrigger(target=7, size=3, value=5.0).poison(x, y, fraction=0.25, rng=rng)
    stamped = np.all(px[:, 0, -3:, -3:] == 5.0, axis=(1, 2))
    assert stamped.sum() == 10 and np.all(py[stamped] == 7)
    assert np.array_equal(py[~stamped], y[~stamped]) and np.array_equal(px[~stamped], x[~stamped])
    with pytest.raises(ConfigurationError, match="fraction"):
        PixelTrigger(target=7).poison(x, y, fraction=0.0, rng=rng)


def test_success_rate_counts_non_target_images_classified_as_target():
    class Corner(torch.nn.Module):  # predicts class 2 exactly when the corner pixel is bright
        def forward(self, x):
            bright = (x[:, 0, -1, -1] > 4).float()
            return torch.stack([1 - bright, torch.zeros_like(bright), bright], dim=1)

    x, y = np.zeros((6, 1, 4, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
    assert PixelTrigger(target=2, size=1, value=5.0).success_rate(Corner(), x, y) == 1.0
    assert PixelTrigger(target=2, size=1, value=1.0).success_rate(Corner(), x, y) == 0.0
    with pytest.raises(ConfigurationError, match="not the target"):
        PixelTrigger(target=2).success_rate(Corner(), x[:1], np.array([2]))


def test_label_flip():
    assert flip_labels(np.array([0, 1, 9]), 10).tolist() == [9, 8, 0]
    with pytest.raises(ConfigurationError):
        flip_labels(np.array([10]), 10)

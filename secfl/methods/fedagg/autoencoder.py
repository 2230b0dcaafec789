"""The shared convolutional autoencoder of FedAgg's latent bridges, trained by the server on its public split.

FedAgg's demo ships a pretrained CIFAR autoencoder; secfl trains one at the start of a run, on the public split
only (``data.public``, disjoint from every client), so no client data shapes the codec. It works in the
dataset's standardised space (the encoder sees what the models see and the decoder returns it), which avoids
the demo's normalisation mismatch. Code: ``4 x (h/4) x (w/4)`` floats (196 for MNIST's 28 x 28).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from secfl.exceptions import ConfigurationError

__all__ = ["AutoEncoder", "train_autoencoder"]


class AutoEncoder(nn.Module):
    """Encoder: two conv/ReLU/max-pool blocks (16, 8 channels), a 4-channel conv. Decoder: the mirror with
    bilinear upsampling and a linear output conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 4, 3, padding=1))
        self.decoder = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.Conv2d(16, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def encode(self, x: np.ndarray, batch: int = 512) -> np.ndarray:
        """float32 ``[n, 4, h/4, w/4]`` codes of images ``[n, c, h, w]``."""
        self.eval()
        parts = [self.encoder(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], dtype=np.float32))).numpy()
                 for i in range(0, len(x), batch)]
        return np.concatenate(parts) if parts else np.zeros((0, 4, 1, 1), np.float32)

    @torch.no_grad()
    def decode(self, codes: np.ndarray, batch: int = 512) -> np.ndarray:
        """float32 images ``[n, c, h, w]`` (the dataset's standardised space) of ``codes``."""
        self.eval()
        parts = [self.decoder(torch.from_numpy(np.ascontiguousarray(codes[i:i + batch], dtype=np.float32))).numpy()
                 for i in range(0, len(codes), batch)]
        return np.concatenate(parts)


def train_autoencoder(x: np.ndarray, *, seed: int, epochs: int = 10, batch_size: int = 64,
                      lr: float = 3e-3) -> AutoEncoder:
    """An ``AutoEncoder`` trained with Adam on mean squared error over images ``x`` ``[n, c, h, w]``.

    Deterministic for a given ``seed`` (its own generators; the global torch RNG is left untouched).

    Raises:
        ConfigurationError: ``x`` is not a batch of images whose sides are multiples of 4, or is empty.
    """
    if x.ndim != 4 or x.shape[2] % 4 or x.shape[3] % 4 or len(x) == 0:
        raise ConfigurationError(f"FedAgg's latent bridges need images [n, c, h, w] with h, w multiples of 4 and "
                                 f"n >= 1, got {x.shape}: use bridge = \"public\" for other data")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoEncoder(int(x.shape[1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    rng = np.random.default_rng([seed, 1])
    model.train()
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(data)), max(1, len(data) // batch_size)):
            optimizer.zero_grad(set_to_none=True)
            functional.mse_loss(model(data[batch]), data[batch]).backward()
            optimizer.step()
    return model.eval()

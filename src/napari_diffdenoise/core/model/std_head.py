"""The std head: a std map in one network evaluation (issue #21's "one-pass std").

A small U-Net takes the normalised noisy image and the mean head's estimate of it (its condition)
and returns s = log E[(clean − mean)² | noisy] per pixel, in model units. It is trained by the
Gaussian negative log-likelihood of the mean head's residual, ½·(s + r²·e^{−s}), with the mean head
frozen (bench/std_head.py, docs/training.md), whose minimum over s is the log of the expected
squared error, so exp(s/2) is the posterior std about the head's mean, bias included. On the
held-out real images of docs/benchmarks/std_head.md it ranks the real error better than the
sampler's spread.
"""
from __future__ import annotations

import math

import torch

from .network import UNet, UNetConfig

# the architecture the bundled models' std heads have: a quarter of the diffusion network's width
STD_HEAD_CONFIG = UNetConfig(cond_channels=1, base_channels=16, channel_mults=(1, 2, 2, 4), blocks_per_level=1,
                             emb_dim=64, fourier_features=16, dropout=0.0, space_to_depth=2)
# where the untrained output starts: a 30 dB error on the model's intensity range of 2
LOG_V0 = math.log(4e-3)
GAMMA = 0.5  # the head's noise-level input: a constant, as the mean head's


def log_variance(network: UNet, noisy: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """s = log E[(clean − mean)² | noisy], both inputs normalised (model units)."""
    return network(noisy, torch.full((len(noisy),), GAMMA, device=noisy.device), mean) + LOG_V0


def nll(network: UNet, noisy: torch.Tensor, mean: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The training loss: the Gaussian negative log-likelihood of the residual clean − mean."""
    s = log_variance(network, noisy, mean)
    return 0.5 * (s + (clean - mean) ** 2 * torch.exp(-s)).mean()


class StdHeadAsEps:
    """The std head in tiled_network.TiledEpsilon's clothes, so that it is tiled and blended like the
    sampler: the 'noisy sample' it is given is the mean estimate, its condition the noisy image,
    and its 'ε' is the log variance."""

    def __init__(self, network: UNet):
        self.network = network

    def predict_eps(self, y, gammas, cond):
        return log_variance(self.network, cond, y)

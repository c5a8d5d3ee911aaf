"""Pixel-wise summaries of K samples: mean (DDPM-avg), standard deviation and Shannon entropy.

Entropy follows Osuna-Vargas et al. (Eq. 16): per pixel, the K sample values over the whole range
samples can take in model units, [−1.5, 1.5] (see normalization.SAMPLE_RANGE), are quantised to
256 equal bins and H = −Σ p·log2(p) over the bins' relative frequencies, in bits. It lies in
[0, log2 K]: 0 when all samples fall in one bin. A model with a wider value range (deconvolution)
gets more bins of the same width, so entropies stay comparable between models.
"""
from __future__ import annotations

import math

import torch

from .normalization import SAMPLE_RANGE

ENTROPY_LEVELS = 256
BIN_WIDTH = (SAMPLE_RANGE[1] - SAMPLE_RANGE[0]) / ENTROPY_LEVELS


def quantise(samples: torch.Tensor, value_range=SAMPLE_RANGE) -> torch.Tensor:
    low, high = value_range
    levels = math.ceil(round((high - low) / BIN_WIDTH, 6))
    return ((samples - low) / BIN_WIDTH).floor().clamp(0, levels - 1).to(torch.int32)


def pixel_entropy(samples: torch.Tensor, value_range=SAMPLE_RANGE) -> torch.Tensor:
    """Entropy in bits over the first axis of ``samples`` (K, ...).

    With c_i the number of samples sharing sample i's bin, p = c_i/K and
    H = −Σ_bins p log2 p = log2 K − (1/K)·Σ_i log2 c_i; this needs K comparisons per sample
    instead of a 256-bin histogram per pixel."""
    q = quantise(samples, value_range)
    k = q.shape[0]
    counts = torch.zeros_like(q, dtype=torch.float32)
    for j in range(k):
        counts += (q == q[j]).float()
    # clamped: in float32 log2 K − mean log2 K can come out at −1e-7 (seen on CUDA) where all samples agree
    return (math.log2(k) - torch.log2(counts).mean(dim=0)).clamp_min(0)


def summarise(samples: torch.Tensor, value_range=SAMPLE_RANGE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, std, entropy) over the sample axis 0; std is the population std (ddof = 0) so that
    K = 1 gives 0 rather than NaN."""
    mean = samples.mean(dim=0)
    std = samples.std(dim=0, correction=0)
    return mean, std, pixel_entropy(samples, value_range)

"""The sample head: a posterior sample in one network evaluation (issue #21's "fewer evaluations per
sample"), distilled from the diffusion sampler.

A small U-Net takes a field of standard Gaussian noise z and, as its condition, the normalised noisy
image and the mean head's estimate of it, and returns a residual: the sample is mean + G(z; noisy,
mean). K draws of z give K samples in K evaluations, where the DDIM sampler needs K × steps. It is
trained (bench/sample_head.py, docs/training.md) on the sampler's own samples of training crops by
the energy score (Gneiting & Raftery 2007), a proper scoring rule: its expectation is smallest when
the student's samples are distributed as the teacher's, per pixel, and, through the same score on
2×- and 4×-pooled images, over small neighbourhoods. The maps taken over samples (the entropy map:
whether they form one group or several) then come at a fraction of the sampler's cost; the mean, std
and intervals come from the heads either way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.network import UNet, UNetConfig
from .samplers import SamplerStep

# an eighth of the diffusion network's width (a sixteenth of its work per pixel): it matched the teacher as
# well as the std head's width did (docs/benchmarks/sample_head.md); its condition is (noisy, mean)
SAMPLE_HEAD_CONFIG = UNetConfig(cond_channels=2, base_channels=8, channel_mults=(1, 2, 2, 4), blocks_per_level=1,
                                emb_dim=64, fourier_features=16, dropout=0.0, space_to_depth=2)
GAMMA = 0.5  # the head's noise-level input: a constant, as the other heads'
POOLS = (1, 2, 4)  # the scales the energy score compares samples at: pixels, 2×2 and 4×4 blocks


def draw(network: UNet, z: torch.Tensor, noisy: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Samples mean + G(z; noisy, mean) in model units: z (K,1,H,W); noisy and mean (1 or K,1,H,W)."""
    k = len(z)
    cond = torch.cat([noisy.expand(k, -1, -1, -1), mean.expand(k, -1, -1, -1)], dim=1)
    return mean + network(z, torch.full((k,), GAMMA, device=z.device), cond)


def energy_score(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The energy score of the student's samples against the teacher's, per pixel and averaged:
    E|S − T| − ½·E|S − S'|, S and S' independent student samples (m ≥ 2 of them), T a teacher sample.
    student (B, m, H, W), teacher (B, n, H, W). Its expectation is smallest, for each pixel, when S is
    distributed as T."""
    m = student.shape[1]
    if m < 2:
        raise ValueError(f"the energy score needs at least 2 student samples per image; got {m}")
    cross = (student[:, :, None] - teacher[:, None, :]).abs().mean(dim=(1, 2))
    spread = (student[:, :, None] - student[:, None, :]).abs().sum(dim=(1, 2)) / (m * (m - 1))
    return (cross - 0.5 * spread).mean()


def multiscale_energy_score(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The energy score at the pixel scale and over 2×2 and 4×4 block means, summed: the pooled terms
    ask the samples to vary together over neighbourhoods as the teacher's do, not pixel by pixel."""
    total = student.new_zeros(())
    for pool in POOLS:
        s = student if pool == 1 else F.avg_pool2d(student, pool)
        t = teacher if pool == 1 else F.avg_pool2d(teacher, pool)
        total = total + energy_score(s, t)
    return total


class SampleHeadAsEps:
    """The sample head in tiled_network.TiledEpsilon's clothes, so that it is tiled and blended like the
    sampler: the 'noisy sample' it is given is the noise field z, its condition the noisy image and the
    mean estimate stacked, and its 'ε' is the sample."""

    def __init__(self, network: UNet):
        self.network = network

    def predict_eps(self, z, gammas, cond):
        return draw(self.network, z, cond[:, :1], cond[:, 1:])


def one_step(eps_fn, schedule, y_T: torch.Tensor, noise_fn, *, clip: tuple[float, float] | None = None):
    """The sampler of :mod:`.samplers`' signature for the sample head: ``eps_fn`` is the head run over
    the plane (core.run.restore builds it for a sampler registered with head="sample_network"), ``y_T``
    the noise fields z, one per sample. One evaluation; the schedule plays no part."""
    x = eps_fn(y_T, GAMMA)
    if clip is not None:
        x = x.clamp(*clip)
    yield SamplerStep(0, 1, x)
    return x

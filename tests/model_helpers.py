"""A tiny network taught for about a second to score noise down: scores then differ between slices, as a trained
model's do. Shared by the core tests and the Deploy and Label apps' tests (each in its own environment)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scripts.nets.networks import create_network


def noise_scorer_checkpoint(path: Path, size: int = 64, preset: str = "hybrid_tiny") -> Path:
    """Train ``preset`` for 60 steps to map noise SD on [0, 1] images to 4 - 20 SD; save its state dict to ``path``."""
    torch.manual_seed(0)
    network, rng = create_network(preset), np.random.default_rng(0)
    optimizer = torch.optim.Adam(network.parameters(), 3e-3)
    for _ in range(60):
        sd = rng.uniform(0, 0.2, 8)
        noisy = np.clip(0.5 + rng.normal(0, 1, (8, 1, size, size)) * sd[:, None, None, None], 0, 1)
        loss = torch.nn.functional.mse_loss(network(torch.from_numpy(noisy).float()).ravel(), torch.tensor(4 - 20 * sd))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return path


def noise_scorer(folder: Path, preset: str = "hybrid_tiny") -> torch.nn.Module:
    """The network of :func:`noise_scorer_checkpoint` loaded back from its file, in eval mode."""
    network = create_network(preset)
    network.load_state_dict(torch.load(noise_scorer_checkpoint(folder / "model.pt", preset=preset), weights_only=True))
    return network.eval()

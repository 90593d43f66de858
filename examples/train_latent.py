"""Train a tiny variational autoencoder whose latent is a matrix normal, with fastmvn's KL.

The encoder maps each observation to a matrix-normal posterior MN(M, U, V) over an
``n×p`` latent matrix, emitting the mean and the Cholesky factors of ``U`` and ``V``
(softplus on their diagonals keeps them valid). A latent drawn as ``M + L_U E L_Vᵀ``
is decoded back, and the loss is the reconstruction error plus the KL to the standard
matrix normal MN(0, I, I), computed by ``fastmvn.torch.kl_chol`` with its closed-form
gradient. Run it with ``python examples/train_latent.py``; it needs ``fastmvn[torch]``.
``FASTMVN_EXAMPLES_QUICK=1`` trains for a few steps on small batches (as the tests run it).
"""

import os

import torch

import fastmvn.torch as fmt


def lower_factor(raw, size):
    """Lower-triangular ``(..., size, size)`` factors from ``size(size+1)/2`` numbers each,
    with softplus on the diagonal, so that the diagonal is positive."""
    rows, cols = torch.tril_indices(size, size)
    factor = raw.new_zeros(raw.shape[:-1] + (size, size))
    factor[..., rows, cols] = raw
    diagonal = torch.nn.functional.softplus(torch.diagonal(factor, dim1=-2, dim2=-1)) + 1e-3
    return torch.tril(factor, -1) + torch.diag_embed(diagonal)


class MatrixNormalAutoencoder(torch.nn.Module):
    """An encoder to MN(M, L_U L_Uᵀ, L_V L_Vᵀ) over ``n×p`` latents and a linear decoder."""

    def __init__(self, features, n, p, hidden=64):
        super().__init__()
        self.n, self.p = n, p
        self.sizes = [n * p, n * (n + 1) // 2, p * (p + 1) // 2]
        self.encoder = torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.Tanh(),
                                           torch.nn.Linear(hidden, sum(self.sizes)))
        self.decoder = torch.nn.Linear(n * p, features)

    def forward(self, x):
        mean, row, col = self.encoder(x).split(self.sizes, dim=-1)
        mean = mean.reshape(x.shape[:-1] + (self.n, self.p))
        rowchol, colchol = lower_factor(row, self.n), lower_factor(col, self.p)
        noise = torch.randn_like(mean)
        latent = mean + rowchol @ noise @ colchol.transpose(-1, -2)
        reconstruction = self.decoder(latent.flatten(-2))
        kl = fmt.kl_chol(mean, rowchol, colchol)  # against MN(0, I, I), one per observation
        return reconstruction, kl


def synthetic_data(count, features, n, p, generator):
    """Observations made from random ``n×p`` latent matrices by a fixed linear map and noise."""
    latent = torch.randn(count, n * p, generator=generator)
    mixing = torch.randn(n * p, features, generator=generator) / (n * p) ** 0.5
    return latent @ mixing + 0.1 * torch.randn(count, features, generator=generator)


def main(steps=300, batch=128, features=24, n=3, p=2, beta=1.0, seed=0, verbose=True):
    """Train for ``steps`` steps; return the loss (per observation) of every step."""
    torch.manual_seed(seed)
    data = synthetic_data(4096, features, n, p, torch.Generator().manual_seed(seed))
    model = MatrixNormalAutoencoder(features, n, p)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(steps):
        x = data[torch.randint(len(data), (batch,))]
        reconstruction, kl = model(x)
        error = (reconstruction - x).square().sum(-1)
        loss = (error + beta * kl).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if verbose and (step % max(1, steps // 10) == 0 or step == steps - 1):
            print(f"step {step:4d}  loss {loss.item():8.3f}  reconstruction {error.mean().item():8.3f}  "
                  f"KL {kl.mean().item():7.3f}")
    return losses


if __name__ == "__main__":
    if os.environ.get("FASTMVN_EXAMPLES_QUICK", "0") == "1":
        losses = main(steps=20, batch=32)
    else:
        losses = main()
    print(f"loss per observation: {losses[0]:.3f} at the first step, {losses[-1]:.3f} at the last")

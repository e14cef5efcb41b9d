"""Vendi score (Friedman & Dieng 2023): the effective number of distinct samples in a set.

With the cosine-similarity kernel K_ij = <x_i, x_j> / (|x_i| |x_j|), VS = exp(-sum_i l_i log l_i)
over the eigenvalues l_i of K / n. It is 1 when all samples point the same way and n when they
are mutually orthogonal. K / n = X X^T / n and X^T X / n (X with unit rows) share their nonzero
eigenvalues, so we decompose whichever is smaller: n x n or d x d.
"""

from __future__ import annotations

import numpy as np

from genlab.errors import UserError
from genlab.metrics.frechet import Features, as_features


def vendi_score(feats: Features) -> float:
    """Vendi score of (N, D) features under the cosine-similarity kernel, in [1, min(N, D)]."""
    x = as_features(feats, "feats").cpu().numpy()
    norms = np.linalg.norm(x, axis=1)
    if not (norms > 0).all():
        row = int(np.flatnonzero(norms == 0)[0])
        raise UserError(f"Vendi score: feats row {row} is all zeros, so its cosine similarity is undefined; drop it")
    x = x / norms[:, None]  # unit rows: K = X X^T is the cosine similarity
    n, d = x.shape
    gram = x @ x.T if n <= d else x.T @ x  # same nonzero eigenvalues as K
    lam = np.linalg.eigvalsh(gram / n)  # eigenvalues l_i of K / n (they sum to tr(K)/n = 1)
    lam = lam[lam > 0]
    return float(np.exp(-(lam * np.log(lam)).sum()))  # VS = exp(-sum_i l_i log l_i)

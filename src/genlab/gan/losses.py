"""Adversarial losses as functions of critic outputs (one score per example, shape (B,)).

``critic_loss(kind, real, fake)`` is minimised by the critic (discriminator), ``generator_loss(kind,
fake, real)`` by the generator; ``real`` / ``fake`` are D(x) and D(G(z)) (logits for the
classification losses). softplus(-t) = -log sigmoid(t).

- minimax (Goodfellow et al. 2014): D max log D(x) + log(1 - D(G(z))); G min log(1 - D(G(z))),
  which saturates when D rejects the samples.
- nonsaturating (same paper's fix): G max log D(G(z)).
- wasserstein (Arjovsky et al. 2017): D max E[f(x)] - E[f(G(z))] (Kantorovich-Rubinstein);
  G max E[f(G(z))].
- hinge (Lim & Ye 2017; Miyato et al. 2018): D min E[relu(1 - D(x))] + E[relu(1 + D(G(z)))];
  G max E[D(G(z))].
- rpgan (relativistic pairing, Jolicoeur-Martineau 2019; R3GAN): D min softplus(-(D(x) - D(G(z))));
  G min softplus(-(D(G(z)) - D(x))), real and fake paired row by row.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from genlab.errors import UserError

LOSSES = ("minimax", "nonsaturating", "wasserstein", "hinge", "rpgan")


def check_loss(kind: str) -> None:
    if kind not in LOSSES:
        raise UserError(f"loss={kind!r}: choose one of {', '.join(LOSSES)}")


def critic_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    """The critic's objective (a scalar to minimise) from D(x) and D(G(z))."""
    check_loss(kind)
    if kind in ("minimax", "nonsaturating"):
        return F.softplus(-real).mean() + F.softplus(fake).mean()  # -log D(x) - log(1 - D(G(z)))
    if kind == "wasserstein":
        return fake.mean() - real.mean()  # -(E_p[f] - E_q[f])
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-(real - fake)).mean()  # rpgan


def generator_loss(kind: str, fake: Tensor, real: Tensor | None = None) -> Tensor:
    """The generator's objective from D(G(z)) (and D(x) for the relativistic loss)."""
    check_loss(kind)
    if kind == "minimax":
        return -F.softplus(fake).mean()  # log(1 - D(G(z))) = -softplus(logit)
    if kind == "nonsaturating":
        return F.softplus(-fake).mean()  # -log D(G(z))
    if kind in ("wasserstein", "hinge"):
        return -fake.mean()
    if real is None:
        raise ValueError("the relativistic (rpgan) generator loss needs D(x) of a real batch")
    return F.softplus(-(fake - real)).mean()

r"""Per-star likelihoods of the flows for incomplete or noisy stars.

A star without a radial velocity informs the density of positions and,
given its proper motions, the density of its tangential velocity (by Monte
Carlo over the missing radial velocity, see
:mod:`gala_deeppotential.sightlines`); a star with measurement errors, the
DF convolved with them (by Monte Carlo, see
:mod:`gala_deeppotential.deconvolution`). :class:`StarLikelihood` evaluates
either for the training loop, :func:`jackknife_log_mean_exp` debiases the
Monte Carlo estimate.
"""

from __future__ import annotations

__all__ = [
    "VALIDATION_ROWS",
    "StarLikelihood",
    "jackknife_log_mean_exp",
]

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .flows import ROW_MULTIPLE, FactorizedFlow
from .standardizer import Standardizer

if TYPE_CHECKING:
    from .deconvolution import NoisyAstrometry

#: Validation stars per member per chunk. Fixed, not shrinking with K, so that
#: a member's validation loss sums the same chunks, in the same order, whatever
#: the size of its batch: early stopping must not depend on the other members.
VALIDATION_ROWS = 1024
# Which of the six coordinates are positions (always measured).
_POSITION_AXES = torch.tensor([True, True, True, False, False, False])


class StarLikelihood:
    r"""Per-star likelihoods for stars with missing radial velocities or errors.

    A star with a radial velocity contributes :math:`\ln f(x, v)`, one
    without the density of its position, :math:`\ln p(x)` (the members
    must factorize as :math:`p(x)\,p(v \mid x)`), times that of its
    tangential velocity when the draws (``noisy``) integrate out its radial
    velocity. With draws, each term is the Monte Carlo estimate
    :math:`\ln \frac1M \sum_m f(y_m)\,w_m` over M draws :math:`y_m` of
    its true coordinates with weights :math:`w_m`
    (:class:`~gala_deeppotential.deconvolution.NoisyAstrometry` for
    measurement errors,
    :class:`~gala_deeppotential.sightlines.MissingRadialVelocities` for
    missing radial velocities alone): debiased by the jackknife
    (:func:`jackknife_log_mean_exp`) for a star with a radial velocity,
    as it is for a star whose radial velocity is drawn. All densities are
    in the caller's units, Jacobians included.
    """

    def __init__(
        self,
        flow: Any,
        scaler: Standardizer,
        y: torch.Tensor,
        order: torch.Tensor,
        n_val: int,
        noisy: NoisyAstrometry | None,
        settings: dict[str, Any],
        device: torch.device,
        selection: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        has_rv = torch.isfinite(y[:, 3:]).all(dim=1)
        if not bool(has_rv.all()) and not isinstance(flow, FactorizedFlow):
            raise ValueError(
                f"{int((~has_rv).sum())} stars have no radial velocity (NaN "
                "velocities): fit them with factorization='conditional', whose "
                "members model the positions' density on its own"
            )
        self.flow, self.scaler, self.noisy, self.device = flow, scaler, noisy, device
        # With the truncated likelihood, a draw of a star's true position
        # counts with the selection there, S(x) f(x, v) / Z: ``selection``
        # gives S at positions (..., 3) as a float64 CPU tensor.
        self.selection = selection
        self.samples = 1 if noisy is None else _draws_per_star(noisy, settings)
        self.train_rows, self.val_rows = order[n_val:], order[:n_val]
        self.has_rv = has_rv.to(device)
        # Exact stars: their coordinates, NaN velocities zeroed (masked below).
        self.y = torch.where(has_rv[:, None] | _POSITION_AXES, y, 0.0).to(device)
        # Validation draws are fixed, so that epochs compare like with like.
        generator = torch.Generator().manual_seed(settings["seed"])
        self.val_noise = torch.randn(
            n_val, self.samples, 4, generator=generator, dtype=torch.float64
        )

    def _log_likelihood(self, stars: torch.Tensor, noise: torch.Tensor | None):
        """Each member's log-likelihood of some stars (K, B): ``stars`` (K, B).

        With ``noise`` (K, B, M, 4), of the true coordinates drawn from the
        measured ones; without, of the measured coordinates as they are.
        """
        k, b = stars.shape
        fixed = noise is None or self.noisy.fixed_positions
        if noise is None:
            samples, y, log_w = 1, self.y[stars][:, :, None], 0.0
        else:
            samples = noise.shape[2]
            y, log_w = self.noisy.draw(stars, noise.to(self.device))
            if self.selection is not None and not fixed:
                seen = self.selection(y[..., :3]).clamp_min(1e-30)
                log_w = log_w + torch.log(seen).to(log_w)
        has_v = self.has_rv[stars][:, :, None].expand(k, b, samples)
        if noise is not None and self.noisy.marginalizes_rv:
            has_v = torch.ones_like(has_v)
        y = torch.where(has_v[..., None] | _POSITION_AXES.to(y.device), y, 0.0)
        s = self.scaler.transform(y).to(torch.float32).reshape(k, b, samples, 6)
        if isinstance(self.flow, FactorizedFlow):
            # Without measurement errors, a star with a radial velocity has
            # the same coordinates in every draw: its velocity term is
            # evaluated once.
            single = None
            if noise is not None and not self.noisy.has_errors:
                single = self.has_rv[stars]
            lp_x, lp_v = _factorized_log_prob(self.flow, s, fixed, single)
            j_x, j_v = (
                t.to(torch.float32) for t in self.scaler.log_abs_det_jacobian_split(y)
            )
            ell = lp_x + j_x + torch.where(has_v, lp_v + j_v, 0.0)
        else:
            lp = _rows_log_prob(self.flow.log_prob, s.reshape(k, -1, 6))
            lp = lp.reshape(k, b, samples)
            ell = lp + self.scaler.log_abs_det_jacobian(y).to(torch.float32)
        if noise is None:
            return ell[..., 0]
        ell = ell + log_w.to(torch.float32)
        # A draw behind the observer (parallax <= 0) has weight 0. A star all
        # of whose draws are behind has no estimate this time: it counts as
        # 0, without a gradient, rather than as NaN, which would poison the
        # weights. With some draws behind, the jackknife's leave-one-out
        # logs are -inf and its correction diverges: the plain mean is used.
        finite = torch.isfinite(ell)
        seen = finite.any(dim=-1)
        ell = torch.where(seen[..., None], ell, 0.0)
        plain = torch.logsumexp(ell, dim=-1) - math.log(samples)
        # A drawn radial velocity takes the plain estimate too (see
        # gala_deeppotential.sightlines for why not the jackknife).
        jackknife = finite.all(dim=-1)
        if self.noisy.marginalizes_rv:
            jackknife = jackknife & self.has_rv[stars]
        if not self.noisy.has_errors:
            jackknife = torch.zeros_like(jackknife)
        estimate = torch.where(jackknife, jackknife_log_mean_exp(ell), plain)
        return torch.where(seen, estimate, 0.0)

    def train_loss(
        self,
        rows: torch.Tensor,
        generators: list[torch.Generator],
        deconvolve: bool = True,
    ) -> torch.Tensor:
        """Each member's mean negative log-likelihood over its batch, (K,).

        ``deconvolve=False`` uses the measured coordinates as they are.
        """
        stars = self.train_rows.to(rows.device)[rows]
        noise = None
        if self.noisy is not None and deconvolve:
            b = rows.shape[1]
            noise = torch.stack(
                [
                    torch.randn(b, self.samples, 4, generator=g, dtype=torch.float64)
                    for g in generators
                ]
            )
        return -self._log_likelihood(stars, noise).mean(dim=1)

    def validation_loss(self) -> torch.Tensor:
        """Each member's mean negative log-likelihood of the held-out stars, (K,)."""
        k = self.flow.n_members
        total = torch.zeros(k, device=self.device)
        with torch.no_grad():
            for chunk in torch.split(torch.arange(len(self.val_rows)), VALIDATION_ROWS):
                stars = self.val_rows[chunk].to(self.device).expand(k, -1)
                noise = None
                if self.noisy is not None:
                    noise = self.val_noise[chunk].expand(k, -1, -1, -1)
                total -= self._log_likelihood(stars, noise).sum(dim=1)
        return (total / len(self.val_rows)).cpu()


def _draws_per_star(noisy: Any, settings: dict[str, Any]) -> int:
    """M: the error draws, or the radial-velocity draws, whichever is more."""
    errors = settings["error_samples"] if noisy.has_errors else 1
    return max(errors, settings["rv_samples"] if noisy.marginalizes_rv else 1)


def _rows_log_prob(log_prob: Callable, s: torch.Tensor, *context: torch.Tensor):
    """``log_prob`` of (K, R, D) rows, padded to whole float32 vectors of rows
    (so a star's value does not depend on the batch around it)."""
    k, rows = s.shape[:2]
    pad = -rows % ROW_MULTIPLE
    padded = [
        torch.cat([t, t.new_zeros(k, pad, t.shape[2])], dim=1) for t in (s, *context)
    ]
    return log_prob(*padded)[:, :rows]


def _factorized_log_prob(
    flow: FactorizedFlow,
    s: torch.Tensor,
    fixed: bool,
    single: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\ln p(x)` and :math:`\ln p(v \mid x)` of draws (K, B, M, 6).

    Both are (K, B, M). With ``fixed`` positions (the same in every draw of
    a star), the positions' flow runs once per star; the velocities' flow
    runs once for the stars marked ``single`` (K, B), whose draws are all
    the same, and its value is repeated over their draws.
    """
    k, b, m, _ = s.shape
    x, v = s[..., :3], s[..., 3:]
    if fixed:
        lp_x = _rows_log_prob(flow.positions.log_prob, x[:, :, 0])[..., None]
        lp_x = lp_x.expand(k, b, m)
    else:
        lp_x = _rows_log_prob(flow.positions.log_prob, x.reshape(k, -1, 3))
        lp_x = lp_x.reshape(k, b, m)
    if single is None or m == 1:
        lp_v = _rows_log_prob(
            flow.velocities.log_prob, v.reshape(k, -1, 3), x.reshape(k, -1, 3)
        )
        return lp_x, lp_v.reshape(k, b, m)
    # Each member's needed rows first, in their order; a member that needs
    # fewer than the most also evaluates some repeated rows. Every evaluated
    # row is written back at its own place, and the repeats are then read
    # from the first draw.
    needed = ~single[..., None] | (torch.arange(m, device=s.device) == 0)
    needed = needed.reshape(k, b * m)
    count = int(needed.sum(dim=1).max())
    index = torch.argsort((~needed).to(torch.int8), dim=1, stable=True)[:, :count]
    pick = index[..., None].expand(k, count, 3)
    lp_needed = _rows_log_prob(
        flow.velocities.log_prob,
        v.reshape(k, -1, 3).gather(1, pick),
        x.reshape(k, -1, 3).gather(1, pick),
    )
    lp_v = lp_needed.new_zeros(k, b * m).scatter(1, index, lp_needed)
    lp_v = lp_v.reshape(k, b, m)
    return lp_x, torch.where(single[..., None], lp_v[..., :1], lp_v)


def jackknife_log_mean_exp(ell: torch.Tensor) -> torch.Tensor:
    r"""The jackknife estimate of :math:`\ln \mathbb E[e^\ell]` from M draws.

    :math:`\hat L_M = \ln \frac1M \sum_m e^{\ell_m}` underestimates the
    log of the mean by about :math:`\mathrm{Var}(e^\ell)/(2M\,\mathbb
    E[e^\ell]^2)`, which, maximised over a DF, leaves it broadened towards
    the error-convolved one. The jackknife
    :math:`M \hat L_M - (M-1)\,\overline{\hat L_{M-1}}`, with the mean over
    the M leave-one-out estimates, cancels that :math:`1/M` term (Nowozin
    2018, ICLR, "Debiasing evidence approximations"). Fitted to a Gaussian
    measured with errors half its width, 4 draws then recover its width
    (to 2.5%), where the plain estimate is 7% too wide.

    Parameters
    ----------
    ell : :class:`torch.Tensor`, shape (..., M)
        :math:`\ell_m`; M of at least 2 (one draw is returned as is).

    Returns
    -------
    estimate : :class:`torch.Tensor`, shape (...)
    """
    m = ell.shape[-1]
    full = torch.logsumexp(ell, dim=-1) - math.log(m)
    if m == 1:
        return full
    # Leave-one-out: ln(sum - e^l_i), computed stably about the maximum.
    top = ell.max(dim=-1, keepdim=True).values.detach()
    scaled = torch.exp(ell - top)
    rest = (scaled.sum(dim=-1, keepdim=True) - scaled).clamp_min(1e-30)
    loo = torch.log(rest) + top - math.log(m - 1)
    return m * full - (m - 1) * loo.mean(dim=-1)

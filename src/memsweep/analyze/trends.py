"""Straight-line fits over a memory time series, with intervals that survive autocorrelation.

Memory samples a second apart are not independent (the allocator, the garbage collector
and the buffer move slowly), so ordinary least-squares intervals would be far too
narrow and every tiny wiggle would look like a leak. Fits here use statsmodels OLS with
Newey–West (HAC) covariance and Student-t intervals. On short series (a plateau of ten
buckets) Newey–West is biased low, below even the classical variance; each coefficient's
variance is therefore the larger of the two (keeping HAC's correlations).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import statsmodels.api as sm
from scipy import stats

from memsweep.units import Estimate

FloatArray = npt.NDArray[np.float64]


def hac_maxlags(n: int) -> int:
    """Newey–West's rule of thumb for the HAC lag window: ⌊4 (n/100)^(2/9)⌋."""
    return max(0, int(4 * (max(n, 0) / 100) ** (2 / 9)))


@dataclass(frozen=True)
class TrendFit:
    """``y = Σ coef·x`` fitted by OLS with HAC covariance; intervals use Student-t."""

    names: tuple[str, ...]
    """Regressor names; ``const`` is the intercept."""

    params: tuple[float, ...]
    """Coefficients, in the order of ``names``."""

    cov: tuple[tuple[float, ...], ...]
    """HAC covariance of the coefficients."""

    df_resid: float
    """Residual degrees of freedom (for the t quantile)."""

    n: int
    """Number of points fitted."""

    resid_sd: float
    """Residual standard deviation, in the unit of y."""

    confidence: float
    """Two-sided interval level, e.g. 0.95."""

    def _t(self) -> float:
        return float(stats.t.ppf(0.5 + self.confidence / 2, max(self.df_resid, 1.0)))

    def coef(self, name: str) -> Estimate:
        index = self.names.index(name)
        value = self.params[index]
        se = math.sqrt(max(self.cov[index][index], 0.0))
        half = self._t() * se
        return Estimate(value, value - half, value + half)

    def p_value(self, name: str) -> float:
        """Two-sided p-value for ``coef(name) == 0``."""
        index = self.names.index(name)
        se = math.sqrt(max(self.cov[index][index], 0.0))
        if se == 0.0:
            return 0.0 if self.params[index] != 0.0 else 1.0
        t_stat = self.params[index] / se
        return float(2 * stats.t.sf(abs(t_stat), max(self.df_resid, 1.0)))

    def mean_at(self, values: Mapping[str, float]) -> Estimate:
        """The fitted mean at ``values`` (``const`` is implied) with its interval."""
        row = np.array([1.0 if name == "const" else float(values[name]) for name in self.names])
        cov = np.array(self.cov)
        value = float(row @ np.array(self.params))
        se = math.sqrt(max(float(row @ cov @ row), 0.0))
        half = self._t() * se
        return Estimate(value, value - half, value + half)


def fit_trend(
    y: npt.ArrayLike, regressors: Mapping[str, npt.ArrayLike], confidence: float = 0.95
) -> TrendFit | None:
    """OLS of ``y`` on a constant and ``regressors`` with HAC intervals; None if unidentified.

    Returns None when there are fewer points than coefficients + 2, or when a regressor
    is constant or collinear (nothing to fit).
    """
    y_arr = np.asarray(y, dtype=np.float64)
    names = ("const", *regressors)
    exog = np.column_stack(
        [np.ones_like(y_arr), *(np.asarray(x, dtype=np.float64) for x in regressors.values())]
    )
    finite = np.isfinite(y_arr) & np.isfinite(exog).all(axis=1)
    y_arr, exog = y_arr[finite], exog[finite]
    n, k = exog.shape
    if n < k + 2:
        return None
    peak = np.abs(exog).max(axis=0)
    if np.linalg.matrix_rank(exog / np.where(peak > 0, peak, 1.0)) < k:
        return None
    result = sm.OLS(y_arr, exog).fit(
        cov_type="HAC", cov_kwds={"maxlags": hac_maxlags(n)}, use_t=True
    )
    hac = np.asarray(result.cov_params())
    classical = float(result.scale) * np.asarray(result.normalized_cov_params)
    hac_sd = np.sqrt(np.maximum(np.diag(hac), 0.0))
    sd = np.maximum(hac_sd, np.sqrt(np.maximum(np.diag(classical), 0.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(np.outer(hac_sd, hac_sd) > 0, hac / np.outer(hac_sd, hac_sd), 0.0)
    np.fill_diagonal(corr, 1.0)
    cov = corr * np.outer(sd, sd)
    return TrendFit(
        names=names,
        params=tuple(float(p) for p in np.asarray(result.params)),
        cov=tuple(tuple(float(c) for c in row) for row in cov),
        df_resid=float(result.df_resid),
        n=n,
        resid_sd=float(math.sqrt(result.scale)),
        confidence=confidence,
    )


def mean_estimate(y: npt.ArrayLike, confidence: float = 0.95) -> Estimate | None:
    """Mean of ``y`` with a HAC interval (a trend fit with no regressor)."""
    fit = fit_trend(y, {}, confidence)
    return fit.coef("const") if fit else None

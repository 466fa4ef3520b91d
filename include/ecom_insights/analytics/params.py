"""Every tunable of the product and revenue analytics, in one reviewed place.

Windows are in days (or weeks) ending at the as-of date, inclusive. Changing a value changes the
marts of every as-of date refreshed afterwards; snapshots already written keep the values they
were computed with (the marts that depend on a window also store it in a column).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class AnalyticsParams:
    # --- uncertainty: every interval in the marts is at this two-sided level
    confidence_level: float = 0.95

    # --- product funnel and leakage
    funnel_weeks: int = 52  # weeks of weekly funnel rows kept per snapshot, as-of week included
    leakage_window_days: int = 90  # the window over which leakage is ranked

    # --- cross-sell rules (association rules mined in SQL)
    cross_sell_window_days: int = 365  # baskets whose order or session lies in this window
    sequence_window_days: int = 30  # "A bought, then B on a later day within N days"
    # A rule is kept only if its pair is in at least this share of the baskets AND this many
    # baskets: the floor that keeps the pair count, and so the SQL, from exploding.
    min_support: float = 0.0005
    min_pair_count: int = 10
    recommendations_per_product: int = 5
    min_recommendation_lift: float = 1.5  # a recommendation must beat chance by this factor

    # --- cohorts
    cohort_horizon_days: int = 90  # revenue per customer over the first N days after signup
    top_cohorts: int = 3  # cohorts named as top revenue cohorts, per kind of cohort

    # --- seasonality (MSTL on daily series) and the seasonality-shift signal
    weekly_period_days: int = 7
    yearly_period_days: int = 364  # 52 weeks, so that 730 days of data hold two full years
    # The yearly profile of the last 52 weeks is compared with the 52 weeks before, the weekly
    # profile of the last 13 weeks with the 52 weeks before them; a correlation of the two
    # profiles below the threshold flags a shift.
    shift_yearly_recent_days: int = 364
    shift_yearly_reference_days: int = 364
    shift_weekly_recent_days: int = 91
    shift_weekly_reference_days: int = 364
    shift_min_profile_correlation: float = 0.5

    # --- campaign counterfactual: a quasi-Poisson GLM of untreated sessions' daily orders
    # (and revenue) per session, with a spline trend, weekday effects and yearly Fourier terms
    baseline_trend_knot_days: int = 90  # one spline degree of freedom per this many days
    baseline_yearly_harmonics: int = 3  # Fourier pairs, used once a year of history exists

    def sql_parameters(self, as_of_date: date) -> dict:
        """The bound parameters of the analytics SQL: every field, the as-of date, the window
        starts it implies, and the normal quantile of the confidence level."""
        from scipy.stats import norm

        return {
            **asdict(self),
            "as_of_date": as_of_date,
            "z": float(norm.ppf(0.5 + self.confidence_level / 2)),
            "funnel_start": funnel_start(as_of_date, self.funnel_weeks),
            "leakage_start": as_of_date - timedelta(days=self.leakage_window_days - 1),
            "cross_sell_start": as_of_date - timedelta(days=self.cross_sell_window_days - 1),
        }


def funnel_start(as_of_date: date, weeks: int) -> date:
    """The Monday that opens the first of `weeks` ISO weeks ending with the as-of date's week."""
    monday = as_of_date - timedelta(days=as_of_date.weekday())
    return monday - timedelta(weeks=weeks - 1)


DEFAULT_PARAMS = AnalyticsParams()

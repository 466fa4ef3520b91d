"""Product and revenue analytics: funnels and leakage, demand trends and seasonality, campaign
lift, cohorts, and cross-sell rules, as marts per as-of date (docs/analytics.md).

Set-based work is SQL (include/sql/intermediate/int_*.sql and include/sql/marts/*.sql); Python
is used where a model is needed: the seasonal decomposition (`seasonality`, `demand`) and the
campaign counterfactual (`campaigns`). `refresh` holds one function per DAG task, `params` every
tunable, `models` the SQL runner.
"""

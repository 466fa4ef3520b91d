"""Every Airflow Asset of the pipeline, defined once; producers and consumers import them.

Airflow's postgres Asset URIs read postgres://host:port/database/schema/table. The host and
database come from ECOM_DATABASE_URL; the embedded server listens on a socket only, so it is
named localhost:5432 here. Reading the environment is the only work done at import time.
"""

from __future__ import annotations

from airflow.sdk import Asset

from ecom_insights.config import load_settings
from ecom_insights.warehouse import url_parts


def _warehouse_authority() -> str:
    url = load_settings().database_url
    if not url:
        return "localhost:5432/postgres"
    parts = url_parts(url)
    host = parts["host"] if parts["host"] and not str(parts["host"]).startswith("/") else None
    return f"{host or 'localhost'}:{parts['port']}/{parts['database']}"


def table_asset(schema: str, table: str) -> Asset:
    uri = f"postgres://{_warehouse_authority()}/{schema}/{table}"
    return Asset(uri=uri, name=f"{schema}.{table}")


# Published by the ingestion DAG when a batch has been merged into core.
CORE_CUSTOMERS = table_asset("core", "customers")
CORE_SESSIONS = table_asset("core", "sessions")
CORE_PRODUCTS = table_asset("core", "products")
CORE_EVENTS = table_asset("core", "events")
CORE_CAMPAIGNS = table_asset("core", "campaigns")
CORE_TABLES = (CORE_CUSTOMERS, CORE_SESSIONS, CORE_PRODUCTS, CORE_EVENTS, CORE_CAMPAIGNS)

# Published by the feature DAG: a snapshot of customer features per as-of date.
MARTS_CUSTOMER_FEATURES = table_asset("marts", "customer_features")

# Published by the warehouse-health DAG.
MARTS_DATA_HEALTH = table_asset("marts", "data_health")

# Published by the analytics DAG, one snapshot per as-of date each.
MARTS_PRODUCT_FUNNEL = table_asset("marts", "product_funnel")
MARTS_FUNNEL_LEAKAGE = table_asset("marts", "funnel_leakage")
MARTS_CROSS_SELL_RULES = table_asset("marts", "cross_sell_rules")
MARTS_CROSS_SELL_RECOMMENDATIONS = table_asset("marts", "cross_sell_recommendations")
MARTS_DEMAND_TRENDS = table_asset("marts", "demand_trends")
MARTS_SEASONALITY_PROFILE = table_asset("marts", "seasonality_profile")
# The seasonality-shift signal that the monitoring DAG uses to trigger retraining.
MARTS_SEASONALITY_SHIFT = table_asset("marts", "seasonality_shift")
MARTS_CAMPAIGN_LIFT = table_asset("marts", "campaign_lift")
MARTS_COHORT_AOV = table_asset("marts", "cohort_aov")
MARTS_COHORT_RETENTION = table_asset("marts", "cohort_retention")

# Published by the scoring DAG, one snapshot per as-of date each.
MARTS_CHURN_SCORES = table_asset("marts", "churn_scores")
MARTS_CUSTOMER_VALUE = table_asset("marts", "customer_value")
MARTS_EARLY_HIGH_VALUE = table_asset("marts", "early_high_value")
MARTS_CUSTOMER_SEGMENTS = table_asset("marts", "customer_segments")

# Published by the training DAG when it has trained and registered the models (whether or not
# the champion changed): the scoring DAG re-scores on it.
MODELS_TRAINED = Asset(name="models.trained", uri="mlflow://registry/ecom_models")

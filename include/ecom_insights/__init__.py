"""E-commerce Insights: customer and session data turned into churn, value and product decisions."""

__version__ = "0.1.0"

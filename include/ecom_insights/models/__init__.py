"""Predictive models of customers: lifetime value (`clv`: BG/NBD and Gamma-Gamma, whose
probability-alive is also the churn model's baseline). docs/clv.md describes the methods."""

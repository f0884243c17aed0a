"""ARES-style remaining-length prediction from the serving model's hidden states, and
prediction-aware scheduling and decode rebalancing (arXiv 2510.13668; no public code)."""

"""Odyssey: adaptive fault-tolerant DP x PP training (arXiv:2508.21613).

At every failure Odyssey scores recovery strategies (reroute, re-plan, spare, restart) with one
performance model and applies the best (Eq. 8). Modules: `model` (a tiny GPT cut into modules),
`data`, `layout` (plans and routing tables), `schedule` (1F1B op graph), `estimator` (Eq. 9-14 +
alpha-beta communication), `planner` (Algorithm 1, DSATUR rounds), `restorer` (Hungarian slot
assignment), `selector` (Eq. 8), `worker` / `controller` (the gloo runtime), `simulator`.
"""

"""Echo-style online/offline co-serving on the shared engine (arXiv 2504.03651, reconstructed).

Online requests (class 0, the default) are latency-critical; offline batch jobs (priority >= 1)
fill idle capacity. Modules: `jobs` (request classes, OpenAI batch files in and out), `kv` (the
prefix-aware eviction policy and the online reserve), `scheduler` (the SLO-guarded plan policy and
its peers), `estimator` (step time, future memory, offline throughput), `workloads` (traces and
batches for replay), `cosim` (co-serving replay and metrics), `commands` (`serve echo`).
"""

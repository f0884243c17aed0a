"""CSGNN: chordless-structure graph neural networks (arXiv:2505.19188) as `papersuite graph-classify`.

Modules, one concept each:
- `graph`      the in-memory graph record shared by every reader;
- `data`       readers (TU raw, JSONL, PPGN text, graph6, BREC TSV) and the CSL generator;
- `features`   node input features (one-hot labels + attributes, else one-hot degree);
- `chordless`  chordless (or simple) cycle enumeration, relations P_d, budget, time limit, cache;
- `model`      CSGNN (trainable and faithful), GIN, GCN, GIN+cycle counts;
- `training`   the train/evaluate loop and the cv / xu protocols;
- `expressivity` untrained pair tests and exact colour refinement;
- `commands`   the Typer sub-app.

This module imports nothing heavy so that `papersuite --help` stays fast.
"""

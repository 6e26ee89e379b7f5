"""The parameter service: a model version's embedding tables served from a key-value store, the
version server holding only the dense part.

- split.py: a SavedModel cut at its table lookups (keys and dense programs, and the tables);
- store.py: the stores (SQLite locally, Redis on a cluster stack), rows keyed by model and version;
- predictor.py: the dense part calling the store once per micro-batch (the version server's model);
- export.py: `plinth model params export` (tables into a store, the dense part kept with the version).
"""

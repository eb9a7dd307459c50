"""The kinds of dataset made from other datasets: views (take, skip, shard, subset, split, filter,
concat), maps, mixes, caches, and the loader's padding and collate.

Each reads a batch's rows from its parents in one vectorised read per parent; the engine reads
rows of a dataset whatever its kind.
"""

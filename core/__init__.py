"""Project-agnostic, Scenic-style training framework: registries, contracts, state, sharding, checkpoints, loop.

Nothing in `core/` imports `projects/`: projects register their pieces into the registries here.
"""

"""bench's Hydra sweeper: one Optuna study per cell (task x model x other sweeps).

Kept free of bench imports: the sweeper works for any Hydra app.
"""

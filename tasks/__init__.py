"""Prefect tasks: one per SemiEvol phase, thin wrappers over semievol_core."""

"""Prefect flows: a round, evaluation, evolution (iterative and continuous), and the command line."""

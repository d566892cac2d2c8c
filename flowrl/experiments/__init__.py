"""Experiments: seeds x configs sweeps, robust aggregate statistics, tables and plots.

Data flow: grid (what to run) -> manifest + sweep (run it) -> runs (read run folders)
-> stats (IQM, bootstrap CIs) -> report (tables) and plot (figures).
"""

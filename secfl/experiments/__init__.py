"""Benchmark grids: ``suite`` (a suite file expanded into validated cells), ``bench`` (``secfl bench``: runs
them resumably) and ``report`` (``secfl report``: tables, heatmaps and curves). Each cell is an ordinary
run directory (``secfl.runs``). Import the modules themselves; this package re-exports nothing.
"""

"""Experiments: configuration files, sweep expansion and execution, single runs, results."""

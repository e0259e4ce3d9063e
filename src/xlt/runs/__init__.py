"""Runs: the up-front checks, stage 1 and stage 2 as recipes, the demo suites and their reports."""

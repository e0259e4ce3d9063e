"""Merge combination names, torch-free: ``xlt merge --help`` lists them without importing torch."""

PEFT_COMBINATIONS = ("linear", "svd", "cat", "ties", "ties_svd", "dare_ties", "dare_linear", "dare_ties_svd",
                     "dare_linear_svd", "magnitude_prune", "magnitude_prune_svd")
COMBINATIONS = ("exact", *PEFT_COMBINATIONS)

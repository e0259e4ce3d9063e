"""Scores: classification, generation, SQuAD-style QA and entity-level metrics (torch-free)."""

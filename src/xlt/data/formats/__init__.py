"""File formats a user's data and the data sets come in: CSV/JSONL tables, IOB2 tag files, line-aligned text."""

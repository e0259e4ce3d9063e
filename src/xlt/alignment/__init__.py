"""Cross-lingual alignment diagnostics."""

"""xlt: parameter-efficient cross-lingual transfer (FLARE, alignment, baselines)."""

__version__ = "0.1.0"

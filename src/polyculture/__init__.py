"""polyculture: culturally aligned language models and cultural-alignment measurement."""

__version__ = "0.1.0"

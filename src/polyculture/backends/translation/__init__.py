"""Translation backends (llm, nllb, google) behind one Translator interface."""

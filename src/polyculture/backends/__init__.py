"""Model backends: generation, embedding, translation, chat templates, built-in models, and the
model spec that names what to load."""

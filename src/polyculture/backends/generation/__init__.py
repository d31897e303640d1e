"""Text generation backends (hf, vllm, openai) behind one Generator interface."""

"""Synthetic data from a teacher model: the generation client (OpenAI-compatible endpoints or a local
Hugging Face model, one interface, a persistent request cache) and the D2 and D3 generation steps."""

"""Tokenize-and-pack and the training loop."""

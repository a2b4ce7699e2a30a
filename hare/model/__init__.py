"""Mistral-architecture model presets and tokenizers."""

"""Corpus construction (D1): read, clean, dedup, decontaminate, mix."""

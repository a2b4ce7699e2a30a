"""Evaluation: held-out perplexity, benchmark registry, lm-evaluation-harness tasks."""

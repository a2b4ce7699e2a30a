"""Tool calling with functional tokens (Octopus v2): function libraries, training queries, decoding
a call, and scoring it per function against retrieval and prompting baselines."""

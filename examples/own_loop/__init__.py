"""A worked example: your own PyTorch loop and transport around secfl's bytes API (run.py)."""

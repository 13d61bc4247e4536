"""Policies for theory experiments: log-linear (pure math) and small Flax networks (`neural`)."""

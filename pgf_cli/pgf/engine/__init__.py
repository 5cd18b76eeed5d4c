"""Engines compute d target / d onehot. Each is tested for equality with plain autograd."""

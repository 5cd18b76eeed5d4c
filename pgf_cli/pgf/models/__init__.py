"""Models: one-hot (b, L, 4) in, named per-position outputs out; targets; loaders."""

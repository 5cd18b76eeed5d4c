"""Workflows tie genome input, models, engines and writers together (no UI code here)."""

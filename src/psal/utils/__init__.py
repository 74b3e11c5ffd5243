"""Small utilities shared across psal's layers (no imports from the rest of psal)."""

"""Small utilities shared across psal's layers.

They import nothing from the rest of psal but its input checks (:mod:`psal._checks`).
"""

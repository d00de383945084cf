"""Recipes: reproducible multi-step procedures built from the library (training a shipped model, BTX …)."""

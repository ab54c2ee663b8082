"""Transforms of the app's infer task."""

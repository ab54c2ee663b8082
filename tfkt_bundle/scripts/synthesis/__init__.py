"""Scored data made offline: the physics low-dose CT simulator and the built-in demo sets."""

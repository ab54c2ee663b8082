"""Scored data made offline: the physics low-dose CT simulator, full-reference label rules, packaged natural pictures
and their distortions, the built-in demo sets and the released weights' training sets."""

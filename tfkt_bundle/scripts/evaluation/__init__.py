"""Evaluation: correlation statistics and the challenge score, ignite metric handlers, prediction reports."""

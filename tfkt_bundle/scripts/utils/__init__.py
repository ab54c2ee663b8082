"""Shared foundations that know no CT and no network: atomic writes, the score scale, the progress bar."""

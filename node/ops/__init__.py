"""Operator tooling: the ``provenet`` command, ``net init|up|down``, demos."""

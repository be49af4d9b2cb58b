"""Worked examples that run on fedsilo."""

"""The ``fedsilo`` command line."""

"""quickstart-numpy: a fedsilo app with NumPy."""

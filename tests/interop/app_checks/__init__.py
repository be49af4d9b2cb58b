"""Scripts that run the same app code against Flower and against fedsilo."""

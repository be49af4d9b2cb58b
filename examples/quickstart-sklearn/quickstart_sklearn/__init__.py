"""quickstart-sklearn: a fedsilo app with scikit-learn."""

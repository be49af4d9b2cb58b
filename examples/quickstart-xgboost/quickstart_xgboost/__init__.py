"""quickstart-xgboost: a fedsilo app with XGBoost."""

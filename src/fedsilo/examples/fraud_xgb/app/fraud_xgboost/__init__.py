"""fraud-xgboost: federated XGBoost (bagging) on the fraud example's sites."""

"""Exact shortcuts for scikit-learn's own estimators: the same answers without its per-call
validation (linear models and scalers, forests walked without joblib, labels read off
predict_proba). `select` decides, once per model at load, which method takes which path and
why not; `probes` checks each choice against scikit-learn on rows from the fitted range, and
a mismatch falls back to scikit-learn."""

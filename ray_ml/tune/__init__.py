"""ray_ml.tune."""

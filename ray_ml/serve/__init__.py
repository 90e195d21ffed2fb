"""ray_ml.serve."""

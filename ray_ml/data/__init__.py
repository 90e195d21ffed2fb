"""ray_ml.data."""

"""ray_ml.train."""

"""ray_ml.config."""

"""ray_ml.registry."""

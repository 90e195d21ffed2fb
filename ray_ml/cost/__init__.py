"""ray_ml.cost."""

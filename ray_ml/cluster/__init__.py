"""ray_ml.cluster."""

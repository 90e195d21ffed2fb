"""ray_ml.report."""

"""ray_ml plugins for Hydra: the ray_jobs launcher."""

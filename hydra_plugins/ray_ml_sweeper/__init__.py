"""ray_ml plugins for Hydra: the ray_tune sweeper."""

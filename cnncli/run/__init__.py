"""Training runs: the plan, the fit loop, callbacks, resumable backups, run folders,
optimizers and learning-rate schedules."""

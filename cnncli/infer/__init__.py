"""Using trained models: finding a run's model and its metadata, evaluation, metrics
and prediction."""

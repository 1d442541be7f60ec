"""Training: the compiled model, the fit loop, losses, metrics, optimizers, learning-rate
schedules, callbacks, initializers, the training state a run resumes from, and the session that
ties them to a project."""

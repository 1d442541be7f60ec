"""One module per layer type; each registers itself with engine.registry."""

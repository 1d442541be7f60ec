"""The graph model and what every part shares: typed parameters, the layer registry, plain-Python
events, errors with their place, Lambda expressions, the activation table, auto-layout and the
generated layer reference."""

"""Layer declarations, one module per Keras category (core, convolution, pooling, recurrent,
normalization, regularization, reshaping, merging, preprocessing); each registers its layers with
layerloom.core.registry. kit.py holds what several declarations share."""

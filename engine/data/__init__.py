"""Data sources and their preparation: synthetic sets, Keras' built-in sets, .npz, CSV/TSV, image
folders and .npy files as named arrays; splits, normalisation and the mapping onto a graph's
inputs and outputs."""

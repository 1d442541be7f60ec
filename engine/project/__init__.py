"""The project file (.loom): format, validation and migrations, and atomic writes of it and of a
run's outputs."""

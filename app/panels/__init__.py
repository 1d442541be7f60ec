"""The window's docks and tabs, one module each: the palette, the inspector, the training dock
(training_panel.py, its threads in train_worker.py), the Data, Curves, Results, Predictions,
Runs, Summary and Problems tabs, and the start page."""

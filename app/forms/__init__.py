"""Widgets generated from declarations: a form for a list of Params (paramform.py, with
param_widgets.py for initializers and regularizers), the training dock's optimizer, losses and
array rows (optimizer_form.py, setup_rows.py), metrics and callbacks (metrics_form.py,
callbacks_form.py on entry_picker.py)."""

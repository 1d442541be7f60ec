"""The editor window (main_window.py) and its concerns as mixins, one per menu or job
(window_files.py, window_edit.py, window_model.py with model_tasks.py, window_interop.py with
code_preview.py, window_help.py, window_runs.py, window_training.py, window_problems.py); what
the application sets up before and around it (qt_platform.py: the platform plugin's libraries;
wheel_guard.py)."""

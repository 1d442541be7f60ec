"""What several rooms draw with: the colours, light or dark (theme.py), numpy images as pixmaps
(images.py), and the file and folder questions (dialogs.py)."""

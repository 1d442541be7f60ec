"""What several rooms draw with: the colours, light or dark (theme.py), and numpy images as
pixmaps (images.py)."""

"""What the editor edits, apart from how it is shown: the open project (document.py: the
project, its file, the undo stack, the trained weights, autosave), the undoable edits
(commands.py) and copy and paste of nodes as text (clipboard.py). The canvas, the panels and
the window all change the project through these."""

"""The Qt editor, in rooms: canvas/ (the node canvas), editing/ (the document, undoable edits,
copy and paste), forms/ (widgets from declarations), panels/ (docks and tabs), window/ (the
main window and its menus), look/ (colours, pictures). The command line that starts it is
layerloom.cli (engine/cli/), which imports none of this unless the editor is wanted."""

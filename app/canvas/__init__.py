"""The node canvas: the scene (canvas.py) and its items (canvas_items.py: nodes, ports, wires),
the view (canvas_view.py: zoom, pan, drops), the wires' paths around nodes (wire_route.py,
plain geometry), the minimap and the context menus."""

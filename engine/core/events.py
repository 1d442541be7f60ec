"""Plain-Python events: the graph model announces changes; views subscribe. No Qt here."""


class Event:
    def __init__(self, name):
        self.name = name
        self._handlers = []

    def connect(self, handler):
        self._handlers.append(handler)
        return handler

    def disconnect(self, handler):
        self._handlers.remove(handler)

    def emit(self, *args):
        for handler in list(self._handlers):
            handler(*args)

"""Cancelling a data read: the editor's Cancel (Data tab) and Stop (training) set a flag that
the readers' progress callbacks check (engine/data/tabular.py after each block read,
engine/data/imagefolder.py while a folder is listed, checked and decoded), so a read of a
large CSV or image folder stops within one block or one image. The read raises Cancelled,
which its caller turns into "stopped, nothing written": nothing is written before the read
ends but the data cache, which writes a temporary file and renames it (image_cache.write
removes it when the fill raises), and a table too large for memory, read into a spill folder
that the read removes when it raises (tabular.read; table_cache.py converts it, calling
progress as it goes)."""


class Cancelled(Exception):
    """The read was cancelled by the user. Not a LayerloomError: nothing is wrong with the
    data or the project."""

    def __init__(self, message="cancelled while reading the data; nothing was written"):
        super().__init__(message)


def cancellable(progress, cancelled):
    """progress(path, done, total, unit="bytes") that first raises Cancelled once
    cancelled() is true. progress None: the check alone."""
    def call(path, done, total, unit="bytes"):
        if cancelled():
            raise Cancelled()
        if progress is not None:
            progress(path, done, total, unit)
    return call

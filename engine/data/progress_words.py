"""The words of a data read's progress, the same in the terminal (`layerloom --run`), the
editor's Data tab and status bar, and its training status: what is done to what, how far
("Reading data.csv: 43% (65 of 152 MB), 38.2 MB/s, 2 s left"; "Decoding faces: 12% (2,400
of 20,000 images), 6,950 images/s, 3 s left"; a table too large for memory converted to the
data cache: "Caching data.csv: 40% (4,000,000 of 10,000,000 rows)")."""
import time

VERBS = {"bytes": "Reading", "listed": "Listing", "files": "Checking", "images": "Decoding",
         "rows": "Caching"}
NOUNS = {"listed": "files"}  # what a unit counts, where its name is not that
RATE_AFTER = 0.5  # seconds of a step before its rate and time left are told


def progress_verb(path, unit="bytes"):
    """What is being done: a URL is downloaded; a file read (bytes), an image folder's files
    listed (listed), their headers checked (files) and its images decoded (images), a
    table's rows converted to the cache (rows)."""
    return "Downloading" if "://" in path else VERBS.get(unit, "Reading")


class ProgressWords:
    """line(path, done, total, unit) -> the line for this call; each (path, unit) is one
    step, timed from its first call. `started(path, unit)`: seconds since that call."""

    def __init__(self, clock=time.perf_counter):
        self.clock, self.steps = clock, {}

    def step(self, path, unit, done):
        """{"t0": when the step began, "done0": how far it was then, "pct": last shown}."""
        return self.steps.setdefault((path, unit), {"pct": None, "t0": self.clock(),
                                                    "done0": done})

    def line(self, path, done, total, unit="bytes"):
        now = self.clock()
        st = self.step(path, unit, done)
        name = path.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
        pct = 100 * done / total if total else None
        finished = bool(total) and done >= total
        if unit == "bytes":
            amount = (f"{pct:.0f}% ({done / 2 ** 20:.0f} of {total / 2 ** 20:.0f} MB)"
                      if total else f"{done / 2 ** 20:.0f} MB")
        else:
            noun = NOUNS.get(unit, unit)
            amount = f"{pct:.0f}% ({done:,} of {total:,} {noun})" if total else \
                f"{done:,} {noun}"
        line = f"{progress_verb(path, unit)} {name}: {amount}"
        seconds = now - st["t0"]
        if seconds >= RATE_AFTER and done > st["done0"]:
            rate = (done - st["done0"]) / seconds
            line += (f", {rate / 2 ** 20:.1f} MB/s" if unit == "bytes" else
                     f", {rate:,.0f} {NOUNS.get(unit, unit)}/s")
            line += f", {seconds:.1f} s" if finished else \
                f", {(total - done) / rate:.0f} s left" if total else ""
        return line

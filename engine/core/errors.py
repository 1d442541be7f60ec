"""Errors a user can act on. Each carries the place it refers to, so a message reads
`graph.nodes[3].params.units: expected a positive integer, got -5`."""


QUOTE_LIMIT = 80  # characters of a value quoted in a message
MESSAGE_LIMIT = 500  # characters of one message: a file's value must not flood the terminal


def quote(value, limit=QUOTE_LIMIT):
    """repr(value) for a message, cut to `limit` characters with an ellipsis. Any JSON value
    may come here: an integer of thousands of digits (which str() refuses), a list nested
    thousands deep (which repr() cannot recurse through), a 50 MB string."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[:4 * limit]  # repr of the head alone
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        try:
            return f"an integer of {len(str(abs(value)))} digits"
        except ValueError:  # more than str() converts
            return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _cut(text, limit=MESSAGE_LIMIT):
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


class LayerloomError(Exception):
    """Base class: a problem the user can fix. The CLI prints it as one line, exit code 2.

    A problem that code acts on (a standard fix, core/fixes.py) also says what it is as data:
    `kind` ("shape_mismatch", "no_loss", ...; None for one nothing acts on) and `fields`, the
    facts a fix needs (node ids, ports, shapes), so that no code reads them out of the
    message, which is for people."""

    exit_code = 2
    # characters of the line it prints; a message of Layerloom's own making that must be
    # whole (the list of layer types, bounded by the registry) raises it
    limit = MESSAGE_LIMIT

    def __init__(self, message, place=None, kind=None, fields=None):
        super().__init__(message)
        self.message = message
        self.place = place
        self.kind = kind
        self.fields = dict(fields or {})

    def __str__(self):
        text = f"{self.place}: {self.message}" if self.place else self.message
        return _cut(text, self.limit)

    def lines(self):
        """The problems, one line each (ProjectError may hold several)."""
        return [str(self)]


class ParamError(LayerloomError):
    """A parameter value is out of bounds or of the wrong kind."""


class GraphError(LayerloomError):
    """The graph is not a valid network (cycle, dangling edge, shape mismatch...). `node` is
    the id of the node at fault, when there is one; `end` says which end of a refused edge
    ("from" or "to") is at fault."""

    def __init__(self, message, place=None, node=None, end=None, kind=None, fields=None):
        super().__init__(message, place, kind, fields)
        self.node, self.end = node, end


class ProjectError(LayerloomError):
    """The project file cannot be read or does not validate. May hold several problems."""

    def __init__(self, message, place=None, problems=None, kind=None, fields=None):
        super().__init__(message, place, kind, fields)
        self.problems = list(problems or [])

    def lines(self):
        return [str(p) for p in self.problems] if self.problems else [str(self)]


class DataError(LayerloomError):
    """The dataset is missing, malformed or does not fit the graph."""


class DeviceError(LayerloomError):
    """No OpenCL device matches what was asked for."""


class TrainingError(LayerloomError):
    """Training failed after it started (e.g. a numeric blow-up). CLI exit code 1."""

    exit_code = 1


class DriverError(LayerloomError):
    """The device's OpenCL driver refused or failed a build of Layerloom's kernels: names the
    device and carries the build log. CLI exit code 1 (not the user's input)."""

    exit_code = 1

    def __init__(self, message, device="", log=""):
        super().__init__(message, device or None)
        self.log = log or ""

    def log_excerpt(self, lines=12):
        """The log's first diagnostic lines, for a message that stays readable."""
        keep = [ln for ln in self.log.splitlines() if ln.strip()]
        return "\n".join(keep[:lines])

    def __str__(self):
        head = super().__str__()
        excerpt = self.log_excerpt()
        return f"{head}\n{excerpt}" if excerpt else head

"""Learning-rate schedules (Keras 3 formulas), evaluated on the host once per step. In a project
file a learning rate may be a number or {"schedule": NAME, ...params}."""
import math
from abc import ABC, abstractmethod

from layerloom.core.errors import ParamError, quote
from layerloom.core.params import Bool, Float, Int, validate_params


class Schedule(ABC):
    name = ""
    params = ()

    def __init__(self, **values):
        self.config = values

    @abstractmethod
    def __call__(self, step):
        """The learning rate at optimizer step `step` (counting from 0)."""


class ExponentialDecay(Schedule):
    name = "exponential_decay"
    params = (Float("initial_learning_rate", 0.01, min=0.0, min_exclusive=True),
              Int("decay_steps", 1000, min=1), Float("decay_rate", 0.96, min=0.0),
              Bool("staircase", False, help="Decay in steps (floor) rather than smoothly."))

    def __call__(self, step):
        c = self.config
        p = step / c["decay_steps"]
        if c["staircase"]:
            p = math.floor(p)
        return c["initial_learning_rate"] * c["decay_rate"] ** p


class PiecewiseConstantDecay(Schedule):
    """values[0] up to boundaries[0] (inclusive), values[1] up to boundaries[1], ..."""
    name = "piecewise_constant_decay"
    params = ()

    def __call__(self, step):
        b, v = self.config["boundaries"], self.config["values"]
        for bound, val in zip(b, v):
            if step <= bound:
                return val
        return v[-1]


class CosineDecay(Schedule):
    """Optional linear warm-up from initial_learning_rate to warmup_target over warmup_steps,
    then cosine decay over decay_steps down to alpha times the peak."""
    name = "cosine_decay"
    params = (Float("initial_learning_rate", 0.001, min=0.0), Int("decay_steps", 1000, min=1),
              Float("alpha", 0.0, min=0.0, max=1.0),
              Float("warmup_target", 0.0, min=0.0, help="Peak after warm-up; 0: no warm-up."),
              Int("warmup_steps", 0, min=0))

    def __call__(self, step):
        c = self.config
        init, target, ws = c["initial_learning_rate"], c["warmup_target"], c["warmup_steps"]
        if target and step < ws:
            return init + (target - init) * step / ws
        peak = target or init
        s = min(step - (ws if target else 0), c["decay_steps"])
        cos = 0.5 * (1 + math.cos(math.pi * s / c["decay_steps"]))
        return peak * ((1 - c["alpha"]) * cos + c["alpha"])


SCHEDULES = {cls.name: cls for cls in (ExponentialDecay, PiecewiseConstantDecay, CosineDecay)}


def validate(spec, place):
    """Check a schedule object; return (normalised dict, problems)."""
    name = spec.get("schedule")
    if not isinstance(name, str) or name not in SCHEDULES:
        return None, [ParamError(f"expected a number or {{\"schedule\": one of "
                                 f"{', '.join(SCHEDULES)}, ...}}; got {quote(name)}",
                                 f"{place}.schedule")]
    rest = {k: v for k, v in spec.items() if k != "schedule"}
    if name == "piecewise_constant_decay":
        b, v = rest.get("boundaries"), rest.get("values")
        ok = (isinstance(b, list) and isinstance(v, list) and len(v) == len(b) + 1
              and all(isinstance(x, int) and not isinstance(x, bool) for x in b)
              and b == sorted(b) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                         and x > 0 for x in v))
        extra = set(rest) - {"boundaries", "values"}
        if not ok or extra:
            return None, [ParamError("expected \"boundaries\" (increasing step numbers) and "
                                     "\"values\" (one more positive learning rate)", place)]
        return {"schedule": name, "boundaries": b, "values": [float(x) for x in v]}, []
    values, problems = validate_params(SCHEDULES[name].params, rest, place)
    return ({"schedule": name, **values} if not problems else None), problems


def build(spec):
    cls = SCHEDULES[spec["schedule"]]
    return cls(**{k: v for k, v in spec.items() if k != "schedule"})

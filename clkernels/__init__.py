"""OpenCL C sources, one op family per .cl file. Shipped as package data."""
from importlib import resources


def source(name):
    """Text of clkernels/<name>.cl from the installed location."""
    return resources.files(__name__).joinpath(f"{name}.cl").read_text(encoding="utf-8")


def names():
    return sorted(p.name[:-3] for p in resources.files(__name__).iterdir()
                  if p.name.endswith(".cl"))

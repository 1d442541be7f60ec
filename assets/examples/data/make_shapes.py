"""Writes the image-folder example: 28x28 grayscale PNGs of circles, squares and triangles
(random size, position, rotation, brightness and noise), one folder per class. Run from the
repository root: python assets/examples/data/make_shapes.py"""
import math
import os

import numpy as np
from PIL import Image, ImageDraw

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shapes")
PER_CLASS, SIZE = 300, 28


def polygon(cx, cy, r, sides, angle):
    return [(cx + r * math.cos(angle + 2 * math.pi * k / sides),
             cy + r * math.sin(angle + 2 * math.pi * k / sides)) for k in range(sides)]


def draw(kind, rng):
    big = SIZE * 4  # drawn large, then reduced: smooth edges
    im = Image.new("L", (big, big), int(rng.integers(0, 60)))
    d = ImageDraw.Draw(im)
    r = rng.uniform(0.22, 0.4) * big
    cx, cy = rng.uniform(r, big - r, 2)
    fill = int(rng.integers(150, 256))
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        sides = 4 if kind == "square" else 3
        d.polygon(polygon(cx, cy, r, sides, rng.uniform(0, 2 * math.pi)), fill=fill)
    a = np.asarray(im.resize((SIZE, SIZE), Image.LANCZOS), np.float64)
    a += rng.normal(0, 8, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def main():
    rng = np.random.default_rng(2026)
    for kind in ("circle", "square", "triangle"):
        os.makedirs(os.path.join(OUT, kind), exist_ok=True)
        for i in range(PER_CLASS):
            draw(kind, rng).save(os.path.join(OUT, kind, f"{kind}_{i:03d}.png"), optimize=True)


if __name__ == "__main__":
    main()

"""Preprocessing and augmentation ops (clkernels/augment.cl): resizing, cropping, flips, affine warps (rotation, zoom, translation), contrast and brightness, seeded per (seed, layer, step). A mixin of Ops (engine/backend/ops.py), whose kernel lookup (_k), fill, grid
padding (_padded) and queue it uses."""


class AugmentOps:
    pass

"""Preprocessing and augmentation ops (clkernels/augment.cl): resizing, cropping, flips, affine
warps (rotation, zoom, translation), contrast and brightness, seeded per (seed, layer, step). A
mixin of Ops (engine/backend/ops.py), whose kernel lookup (_k), grid padding (_padded) and queue
it uses.

Every geometric layer is one resampling of its input through a per-sample affine map (a
WarpGeometry says the sizes, the box the map reads and how; the maps are 6 floats a sample, or
one map for all with tstride 0); the random layers draw their maps on the device
(draw_transforms, Philox as Dropout), so a step enqueues and never waits."""
from typing import NamedTuple

FILL_MODES = {"constant": 0, "nearest": 1, "wrap": 2, "reflect": 3}
DRAW = {"flip": 0, "rotate": 1, "zoom": 2, "translate": 3, "crop": 4, "scalar": 5,
        "crop_resize": 6}
_FILES = ("dropout", "augment")  # augment.cl draws with dropout.cl's Philox


class WarpGeometry(NamedTuple):
    """Input H x W x C, output OH x OW; the map reads the box of BH x BW pixels at (top, left),
    with nearest (1) or bilinear (0) interpolation and a fill mode (FILL_MODES) outside it.
    In the order warp_forward/backward take them."""
    H: int
    W: int
    C: int
    OH: int
    OW: int
    top: int
    left: int
    BH: int
    BW: int
    nearest: int
    mode: int


class AugmentOps:
    def _aug(self, name, items):
        """Kernel `name` of augment.cl and its (global, local) for `items` work-items (on CPUs
        in work-groups of 64, the kernel skipping the padding)."""
        return self._k(_FILES, name), self._padded(items, 64)

    def warp(self, x, y, T, tstride, n, g, fill_value=0.0):
        """y = x resampled through the maps T (g: a WarpGeometry)."""
        total = n * g.OH * g.OW * g.C
        if total:
            k, grid = self._aug("warp_forward", total)
            k(self.q, *grid, x, y, T, tstride, *g, float(fill_value), total)

    def warp_backward(self, dy, dx, T, tstride, n, g, accumulate=False):
        """dx (+)= the gradient of warp's output dy through the same maps."""
        total = n * g.C
        if total:
            k, grid = self._aug("warp_backward", total)
            k(self.q, *grid, dy, dx, T, tstride, *g, int(accumulate), total)

    def draw_transforms(self, T, tstride, count, kind, params, H, W, seed, salt, step):
        """Random maps (or scalars) for `count` samples into T, from Philox keyed by (seed,
        salt) with the step as counter: kind a key of DRAW, params up to 6 floats (see
        augment.cl)."""
        if count:
            p = [float(v) for v in params] + [0.0] * (6 - len(params))
            k, grid = self._aug("draw_transforms", count)
            k(self.q, *grid, T, tstride, count, DRAW[kind], *p, H, W, seed & 0xFFFFFFFF,
              salt & 0xFFFFFFFF, step & 0xFFFFFFFF)

    def contrast(self, x, y, F, fstride, M, n, S, C, lo, hi):
        total = n * C
        if total:
            k, grid = self._aug("contrast_forward", total)
            k(self.q, *grid, x, y, F, fstride, M, S, C, float(lo), float(hi), total)

    def contrast_backward(self, x, dy, dx, F, fstride, M, n, S, C, lo, hi, accumulate=False):
        total = n * C
        if total:
            k, grid = self._aug("contrast_backward", total)
            k(self.q, *grid, x, dy, dx, F, fstride, M, S, C, float(lo), float(hi),
              int(accumulate), total)

    def brightness(self, x, y, D, dstride, n, per, lo, hi, dy=None, accumulate=False):
        """y = clip(x + D[sample], lo, hi); with dy: y (+)= dy where it was not clipped."""
        total = n * per
        if total:
            k, grid = self._aug("brightness", total)
            k(self.q, *grid, x, self._or_dummy(dy), y, D, dstride, per, float(lo), float(hi),
              int(dy is not None), int(accumulate), total)

    def channel_affine(self, x, y, S, O, n, C, accumulate=False):
        """y (+)= x * S[channel] + O[channel] over n elements, the channel the last axis of C;
        O None: no offset (the gradient)."""
        if n:
            k, grid = self._aug("channel_affine", n)
            k(self.q, *grid, x, y, S, self._or_dummy(O), C, int(O is not None), int(accumulate),
              n)

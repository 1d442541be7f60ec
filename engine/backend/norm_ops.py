"""The normalisation layers' ops beyond BatchNormalization's and LayerNormalization's own
(clkernels/norm.cl): the grouped ones (GroupNormalization, LayerNormalization over axes other
than the trailing ones, UnitNormalization), each over the groups its layer lists as constants
(members, gamma entry and group of each element), and Normalization's fixed statistics. A mixin
of Ops (engine/backend/ops.py), whose kernel lookup (_k), dummy buffer and queue it uses."""


class NormOps:
    def grouped_norm_forward(self, x, y, gamma, beta, mean, rstd, plan, n, size, eps,
                             unit=False):
        """plan: the layer's constants ("offs", "src", "pidx", "grp") and its group count "G"."""
        if n and plan["G"]:
            self._k("norm", "grouped_norm_forward")(
                self.q, (plan["G"], n), None, x, y, self._or_dummy(gamma), self._or_dummy(beta),
                mean, rstd, plan["offs"], plan["src"], plan["pidx"], size, eps,
                int(gamma is not None), int(beta is not None), int(unit))

    def grouped_norm_backward(self, x, dy, gamma, mean, rstd, plan, n, size, eps, dx,
                              accumulate=False, unit=False):
        if n and plan["G"]:
            self._k("norm", "grouped_norm_backward")(
                self.q, (plan["G"], n), None, x, dy, self._or_dummy(gamma), mean, rstd,
                plan["offs"], plan["src"], plan["pidx"], size, eps, int(gamma is not None),
                int(unit), dx, int(accumulate))

    def grouped_norm_param_grad(self, x, dy, mean, rstd, plan, n, size, dgamma, dbeta):
        """dgamma, dbeta (either may be None): sums over the batch per gamma entry."""
        K = plan["K"]
        if K and n:
            pa = self._scratch("norm_parts_a", 4 * n * K)
            pc = self._scratch("norm_parts_b", 4 * n * K)
            self._k("norm", "grouped_norm_param_parts")(
                self.q, (K, n), None, x, dy, mean, rstd, plan["poffs"], plan["psrc"],
                plan["grp"], size, plan["G"], pa, pc)
            for parts, out in ((pa, dgamma), (pc, dbeta)):
                if out is not None:
                    self._sum_parts(parts, n, K, out, self._dummy, 0, 0, 0)
        elif K:
            for out in (dgamma, dbeta):
                if out is not None:
                    self.fill(out, K)

    def stats_apply(self, x, y, mean, var, sidx, n, size, invert):
        """Normalization's (x - mean) / max(sqrt(variance), 1e-7) (or its inverse); sidx:
        each element's statistic."""
        if n and size:
            self._k("norm", "stats_apply")(self.q, (size, n), None, x, y, mean, var, sidx, size,
                                           int(invert))

    def stats_apply_grad(self, dy, dx, var, sidx, n, size, invert, accumulate=False):
        if n and size:
            self._k("norm", "stats_apply_grad")(self.q, (size, n), None, dy, dx, var, sidx, size,
                                                int(invert), int(accumulate))

"""The normalisation layers' ops beyond BatchNormalization's and LayerNormalization's own
(clkernels/norm.cl): the grouped ones (GroupNormalization, LayerNormalization over axes other
than the trailing ones, UnitNormalization), each over the groups its layer lists as constants
(members, gamma entry and group of each element), and Normalization's fixed statistics. A mixin
of Ops (engine/backend/ops.py), whose kernel lookup (_k), dummy buffer and queue it uses."""
from layerloom.backend.grid import cdiv


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

    # -- GroupNormalization over the last axis: each sample as A rows of C channels, G groups
    # of CW = C / G consecutive channels (clkernels/norm.cl gn_*)
    GN_BLOCK_FLOATS = 4096  # a statistics block's R x C floats: 16 KiB, in L1 for two passes
    gn_per_sample = None  # True/False: that form (tests); None: per device and batch

    def _gn_per_sample(self, n):
        """Whether the per-sample form runs (one work-item a sample, all stages in one
        kernel): on CPUs with at least two samples for each core."""
        if self.gn_per_sample is not None:
            return self.gn_per_sample
        return self.rt.kind == "cpu" and n >= 2 * self.rt.device.max_compute_units

    def _gn_blocks(self, A, C):
        """(R rows a block, P blocks) of the block form's statistics."""
        R = min(A, max(4, self.GN_BLOCK_FLOATS // C))
        return R, cdiv(A, R)

    def _gn_coefs(self, n, C, count):
        return [self._scratch(f"gn_coef_{i}", 4 * n * C) for i in range(count)]

    def group_norm_forward(self, x, y, gamma, beta, mean, rstd, n, A, C, G, eps):
        """y = GroupNormalization(x) over channels-last x (n, A, C); mean and rstd (n, G) keep
        each group's statistics for the backward pass."""
        if not (n and A and C):
            return
        per_sample = self._gn_per_sample(n)
        R, P = (A, 1) if per_sample else self._gn_blocks(A, C)
        pm = self._scratch("gn_parts_a", 4 * n * P * C)
        pq = self._scratch("gn_parts_b", 4 * n * P * C)
        cm, ck = self._gn_coefs(n, C, 2)
        gamma_args = (self._or_dummy(gamma), int(gamma is not None))
        if per_sample:
            k, _ = self._k_w("norm", "gn_sample_forward", C)
            k(self.q, (n,), (1,), x, y, gamma_args[0], self._or_dummy(beta), mean, rstd, A, C,
              C // G, eps, gamma_args[1], int(beta is not None), pm, pq, cm, ck)
            return
        k, _ = self._k_w("norm", "gn_block_stats", C)
        k(self.q, (P, n), None, x, A, C, R, pm, pq)
        self._k("norm", "gn_group_stats")(self.q, (G, n), None, pm, pq, A, C, R, P, C // G,
                                           eps, *gamma_args, mean, rstd, cm, ck)
        k, _ = self._k_w("norm", "gn_apply", C)
        k(self.q, (P, n), None, x, y, cm, ck, self._or_dummy(beta), A, C, R,
          int(beta is not None))

    def group_norm_backward(self, x, dy, gamma, mean, rstd, n, A, C, G, dx=None, dgamma=None,
                            dbeta=None, accumulate=False):
        """dx (+)= the input's gradient (where dx is given); dgamma, dbeta (either may be
        None): written, summed over the batch."""
        if not (n and A and C):
            for out in (dgamma, dbeta):
                if out is not None:
                    self.fill(out, C)
            return
        per_sample = self._gn_per_sample(n)
        R, P = (A, 1) if per_sample else self._gn_blocks(A, C)
        pa = self._scratch("gn_parts_a", 4 * n * P * C)
        pc = self._scratch("gn_parts_b", 4 * n * P * C)
        cm, k0, k1, k2 = self._gn_coefs(n, C, 4)
        gamma_args = (self._or_dummy(gamma), int(gamma is not None))
        if per_sample:
            k, _ = self._k_w("norm", "gn_sample_backward", C)
            k(self.q, (n,), (1,), x, dy, *gamma_args, mean, rstd, A, C, C // G, pa, pc, cm, k0,
              k1, k2, self._or_dummy(dx), int(dx is not None), int(accumulate))
        else:
            k, _ = self._k_w("norm", "gn_block_grad", C)
            k(self.q, (P, n), None, x, dy, mean, rstd, A, C, R, C // G, pa, pc)
        if dgamma is not None or dbeta is not None:
            self._k("norm", "gn_param_grad")(
                self.q, (C,), None, pa, pc, n * P, self._or_dummy(dgamma),
                self._or_dummy(dbeta), int(dgamma is not None), int(dbeta is not None))
        if dx is None or per_sample:
            return
        self._k("norm", "gn_group_grad")(self.q, (G, n), None, pa, pc, *gamma_args, mean, rstd,
                                          A, C, P, C // G, cm, k0, k1, k2)
        k, _ = self._k_w("norm", "gn_grad_input", C)
        k(self.q, (P, n), None, x, dy, cm, k0, k1, k2, A, C, R, dx, int(accumulate))

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

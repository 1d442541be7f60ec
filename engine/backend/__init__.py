"""The OpenCL backend: device discovery, the compiler probe, program builds, and the ops
(elementwise, GEMM, convolution, losses, optimizers) that enqueue clkernels."""

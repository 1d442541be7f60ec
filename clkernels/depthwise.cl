// Depthwise and transposed convolution ops (clkernels/depthwise.cl): see engine/backend/depthwise_ops.py

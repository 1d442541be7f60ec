// The attention layers' ops (clkernels/attention.cl): see engine/backend/attention_ops.py

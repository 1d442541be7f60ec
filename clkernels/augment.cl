// Preprocessing and augmentation ops (clkernels/augment.cl): see engine/backend/augment_ops.py

"""Numpy images (H, W, 1) or (H, W, 3), values 0..1 or 0..255, as QPixmaps."""
import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap


def pixmap(img, size):
    a = np.asarray(img, np.float32)
    a = np.clip(a * (255.0 if a.max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    h, w = a.shape[:2]
    if a.ndim == 2 or a.shape[-1] == 1:
        q = QImage(np.ascontiguousarray(a.reshape(h, w)).data, w, h, w, QImage.Format_Grayscale8)
    else:
        q = QImage(np.ascontiguousarray(a[..., :3]).data, w, h, 3 * w, QImage.Format_RGB888)
    return QPixmap.fromImage(q.copy()).scaled(size, size, Qt.KeepAspectRatio)

"""xai_helpers: FGSM adversarial examples on MobileNetV2, explained with Grad-CAM and Integrated Gradients.

The public API the book, the command line and the tests use; every function takes and returns NumPy arrays,
and the Keras model is the one object passed around.
"""
from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter would otherwise land in every notebook's stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .attacks import (DEFAULT_EPS, DEFAULT_EPS_PIXELS, eps_to_pixels, fgsm, fgsm_targeted,  # noqa: E402
                      iterative_fgsm_targeted, loss_gradient_sign, pixels_to_eps)
from .compare import compare_maps, to_2d  # noqa: E402
from .data import deprocess, load_image, sample_image, sample_photos  # noqa: E402
from .gradcam import gradcam  # noqa: E402
from .integrated_gradients import IGResult, integrated_gradients  # noqa: E402
from .model import class_labels, load_model, predict, weights_fingerprint  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_EPS", "DEFAULT_EPS_PIXELS", "IGResult", "class_labels", "compare_maps", "deprocess",
    "eps_to_pixels", "fgsm", "fgsm_targeted", "gradcam", "integrated_gradients", "iterative_fgsm_targeted", "load_image",
    "load_model", "loss_gradient_sign", "pixels_to_eps", "predict", "sample_image", "sample_photos",
    "to_2d", "weights_fingerprint", "__version__",
]

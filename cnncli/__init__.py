"""cnncli: convolutional networks from YAML, trained and run with Keras on TensorFlow."""

import os as _os

__version__ = "0.1.0"

# Set before anything can import TensorFlow: without it, importing TensorFlow on a
# machine without CUDA prints a page of cuInit errors; Keras must use TensorFlow.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

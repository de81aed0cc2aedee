"""Data: datasets by name or path, the one image decoder, prediction inputs, and the
tf.data pipeline that turns uint8 images into model inputs."""

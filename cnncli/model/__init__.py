"""Networks: specs (YAML) and their expansion, the Keras builder, the lecture's summary
table, built-in architectures, pretrained models, and safe model files."""

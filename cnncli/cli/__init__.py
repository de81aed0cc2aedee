"""The command line: the typer app (`app`), one module per group of commands, and the
rendering of results (`render`). Nothing here imports TensorFlow at the top."""

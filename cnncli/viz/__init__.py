"""Seeing inside a network: its filters, its activation maps, where it found a class
(Grad-CAM), and the network drawn as the lecture draws it.

Each picture is computed as arrays first (`filters`, `activations`, `gradcam`,
`network_plot`), then written as a PNG by `cnncli.plots`, so tests can check both."""

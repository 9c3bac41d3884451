"""Helpers for the adversarial-autoencoder course: data, networks, priors, training, metrics, plots and widgets."""
__version__ = "0.1.0"

"""Generative models: a variational autoencoder and DDPM/DDIM diffusion."""

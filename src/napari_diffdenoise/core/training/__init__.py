"""Fitting models: training and fine-tuning on a user's images, adaptation to noisy images alone,
their training data and several devices."""

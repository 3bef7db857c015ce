"""Keras 3 (TensorFlow) trainer and evaluation for the pooled 1D CNN of Soysal et al. 2025."""

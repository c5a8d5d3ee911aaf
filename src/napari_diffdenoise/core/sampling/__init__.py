"""Samplers, few-step solvers and guidance over a model's network, their registry, and the
counter-based noise they draw."""

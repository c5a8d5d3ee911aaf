"""Calibrating the intervals: the conformal factor measured on clean pairs or on the user's noisy
image, by running restorations and scoring their errors."""

"""Images as arrays and what is computed from them alone: axes and planes, normalisation, tiles,
PSFs and the optics, simulated acquisitions and camera noise, metrics and the samples' summaries."""

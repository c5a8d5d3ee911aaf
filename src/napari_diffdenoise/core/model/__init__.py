"""The diffusion model: its U-Net, noise schedule and heads, the model that holds them, the network
evaluated tile by tile, and the device it runs on."""

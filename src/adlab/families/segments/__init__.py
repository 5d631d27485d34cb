"""Customer segments: an autoencoder with a DEC/IDEC clustering head, beside k-means, a Gaussian mixture and RFM cells."""

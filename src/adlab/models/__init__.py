"""One LightningModule per model family."""

"""Non-deep baselines fitted on the same split and preprocessing as the neural model."""

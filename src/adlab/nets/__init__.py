"""Plain `nn.Module`s, free of Lightning, reused by the model families."""

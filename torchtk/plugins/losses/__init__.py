"""Built-in losses, one module per family: classification, regularization, torch.nn."""

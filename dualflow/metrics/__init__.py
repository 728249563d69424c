"""torchmetrics Metrics for colour precision, transitions, edges, perceptual quality and attention."""

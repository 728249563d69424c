"""One LightningModule per stage; they wire models, losses, metrics and optimisers (no architecture here)."""

"""Networks as plain ``nn.Module``s (no Lightning), easy to export: AttentionNet and the UNet colorizers."""

from dualflow.models.attention_net import AttentionNet
from dualflow.models.unet import UNet

__all__ = ["AttentionNet", "UNet"]

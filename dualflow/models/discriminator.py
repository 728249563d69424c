"""PatchGAN discriminator (pix2pix): real/fake logits per receptive-field patch of (bw, colour) pairs."""

from torch import nn


class PatchDiscriminator(nn.Module):
    """(B, in_channels, H, W) → (B, 1, H/8, W/8) logits; spectral norm keeps the hinge game stable."""

    def __init__(self, in_channels: int = 4, base: int = 32, layers: int = 3):
        super().__init__()
        sn = nn.utils.spectral_norm
        mods, c = [], in_channels
        for i in range(layers):
            cout = base * 2**i
            mods += [sn(nn.Conv2d(c, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c = cout
        mods.append(sn(nn.Conv2d(c, 1, 3, padding=1)))
        self.net = nn.Sequential(*mods)

    def forward(self, x):
        return self.net(x)

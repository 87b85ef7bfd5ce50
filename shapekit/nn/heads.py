"""Landmark heads: direct coordinate regression and heatmaps decoded by DSNT.

Both map a feature map ``(B, C, h, w)`` to coordinates ``(B, L, 2)`` in normalised
units (x then y; -1 and +1 are the outer edges of the input image, method.md §3).
"""

from __future__ import annotations

from torch import nn

from shapekit.nn.functional import dsnt as _dsnt, flat_softmax as _flat_softmax


class RegressionHead(nn.Module):
    """Global average pooling, dropout, then a linear layer of ``2 L`` outputs."""

    def __init__(self, in_features, n_points, dropout=0.0):
        super().__init__()
        self.n_points = n_points
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, 2 * n_points)
        # Start at the image centre with small outputs so early steps are not wild.
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features):
        if features.ndim == 4:
            features = self.pool(features).flatten(1)
        return self.fc(self.dropout(features)).view(-1, self.n_points, 2)


class DSNTHead(nn.Module):
    """Upsampling convolutions to ``L`` heatmap logits, flat softmax, then DSNT.

    ``n_upsample`` doubles the resolution of the backbone's last feature map that many
    times (bilinear upsampling + 3x3 conv + BN + ReLU), so a stride-32 backbone gives
    heatmaps at stride ``32 / 2**n_upsample`` of the input.
    """

    def __init__(self, in_features, n_points, n_upsample=2, channels=128):
        super().__init__()
        self.n_points = n_points
        layers = []
        c = in_features
        for _ in range(n_upsample):
            layers += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            c = channels
        self.decoder = nn.Sequential(*layers)
        self.hm = nn.Conv2d(c, n_points, 1)

    def heatmaps(self, features):
        """Return the normalised heatmaps ``(B, L, H, W)`` (each sums to 1)."""
        return _flat_softmax(self.hm(self.decoder(features)))

    def forward_with_heatmaps(self, features):
        hm = self.heatmaps(features)
        return _dsnt(hm, normalize=None), hm

    def forward(self, features):
        return self.forward_with_heatmaps(features)[0]

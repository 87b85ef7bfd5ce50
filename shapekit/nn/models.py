"""Landmark models in plain torch: backbones with torchvision's state-dict key layout, plus heads.

Every model maps images ``(B, C, S, S)`` in ``[0, 1]`` to landmark coordinates
``(B, L, 2)`` in normalised units (-1/+1 = outer image edges, method.md §3).
The ImageNet backbones (MobileNetV2, EfficientNet B0-B3, ResNet-18/34/50,
DenseNet-121) reproduce torchvision's module names exactly, so a torchvision or timm
ImageNet state dict loads from a local file (:func:`load_pretrained`); torchvision
itself is not needed.
"""

from __future__ import annotations

import math
import re
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from shapekit.errors import ShapekitError
from shapekit.nn.heads import DSNTHead, RegressionHead

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _make_divisible(v, divisor=8, min_value=None):
    # torchvision's rounding of channel counts: keeps key shapes identical to its models.
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvNormAct(nn.Sequential):
    """Conv (no bias) + BatchNorm + activation; keys ``0.*``, ``1.*`` as torchvision's Conv2dNormActivation."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1, act=nn.ReLU6, norm=nn.BatchNorm2d):
        layers = [nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                  norm(cout)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


# --------------------------------------------------------------------- MobileNetV2
class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(inp, hidden, 1))
        layers += [ConvNormAct(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class _PooledClassifier(nn.Module):
    """A ``features`` trunk, global average pooling and a ``classifier`` (torchvision's layout)."""

    def _finish(self, features, num_classes, dropout):
        self.features = nn.Sequential(*features)
        if num_classes:
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        _init_weights(self)

    def forward_features(self, x):
        return self.features(x)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class MobileNetV2(_PooledClassifier):
    """MobileNetV2 (Sandler et al. 2018) with width multiplier; torchvision key layout."""

    def __init__(self, width=1.0, num_classes=0, in_channels=3, dropout=0.2):
        super().__init__()
        if width <= 0:
            raise ShapekitError(f"width: expected a positive width multiplier, got {width}")
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                   [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
        cin = _make_divisible(32 * width)
        self.num_features = _make_divisible(1280 * max(1.0, width))
        features = [ConvNormAct(in_channels, cin, 3, 2)]
        for t, c, n, s in setting:
            cout = _make_divisible(c * width)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvNormAct(cin, self.num_features, 1))
        self._finish(features, num_classes, dropout)


# --------------------------------------------------------------------- EfficientNet
class SqueezeExcitation(nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * s


def _residual(out, x, sd_prob, training):
    """Return ``x + out``, dropping ``out`` per sample with probability ``sd_prob`` while training.

    Stochastic depth in torchvision's "row" mode: the kept branches are scaled by
    ``1 / (1 - sd_prob)`` so that the expectation is unchanged.
    """
    if training and sd_prob > 0:
        keep = 1.0 - sd_prob
        noise = torch.empty([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device).bernoulli_(keep)
        out = out * noise / keep
    return out + x


class MBConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand, sd_prob, norm):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        hidden = _make_divisible(cin * expand)
        act = nn.SiLU
        layers = []
        if hidden != cin:
            layers.append(ConvNormAct(cin, hidden, 1, act=act, norm=norm))
        layers.append(ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, act=act, norm=norm))
        layers.append(SqueezeExcitation(hidden, max(1, cin // 4)))
        layers.append(ConvNormAct(hidden, cout, 1, act=None, norm=norm))
        self.block = nn.Sequential(*layers)
        self.sd_prob = sd_prob

    def forward(self, x):
        out = self.block(x)
        return _residual(out, x, self.sd_prob, self.training) if self.use_res_connect else out


_EFFNET = {  # width, depth, dropout (Tan & Le 2019 compound scaling; torchvision's values)
    "b0": (1.0, 1.0, 0.2), "b1": (1.0, 1.1, 0.2), "b2": (1.1, 1.2, 0.3), "b3": (1.2, 1.4, 0.3),
}


class EfficientNet(_PooledClassifier):
    """EfficientNet B0-B3 by compound scaling of width and depth; torchvision key layout."""

    def __init__(self, variant="b0", num_classes=0, in_channels=3, stochastic_depth=0.2, dropout=None):
        super().__init__()
        if variant not in _EFFNET:
            raise ShapekitError(f"variant: expected one of {sorted(_EFFNET)}, got {variant!r}")
        width, depth, drop = _EFFNET[variant]
        dropout = drop if dropout is None else dropout
        base = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
        cfg = [(e, k, s, _make_divisible(ci * width), _make_divisible(co * width), int(math.ceil(n * depth)))
               for e, k, s, ci, co, n in base]
        norm = nn.BatchNorm2d
        features = [ConvNormAct(in_channels, cfg[0][3], 3, 2, act=nn.SiLU, norm=norm)]
        total = sum(c[-1] for c in cfg)
        block_id = 0
        for e, k, s, ci, co, n in cfg:
            stage = []
            for i in range(n):
                stage.append(MBConv(ci if i == 0 else co, co, k, s if i == 0 else 1, e,
                                    stochastic_depth * block_id / total, norm))
                block_id += 1
            features.append(nn.Sequential(*stage))
        self.num_features = 4 * cfg[-1][4]
        features.append(ConvNormAct(cfg[-1][4], self.num_features, 1, act=nn.SiLU, norm=norm))
        self._finish(features, num_classes, dropout)


# --------------------------------------------------------------------- EfficientNet-Lite
_EFFNET_LITE = {  # width, depth, dropout, native resolution (Google's efficientnet_lite_builder)
    "lite0": (1.0, 1.0, 0.2, 224), "lite1": (1.0, 1.1, 0.2, 240), "lite2": (1.1, 1.2, 0.3, 260),
    "lite3": (1.2, 1.4, 0.3, 280), "lite4": (1.4, 1.8, 0.3, 300),
}


class _LiteBlock(nn.Module):
    """MBConv without squeeze-excitation, ReLU6; key names of the efficientnet_pytorch layout."""

    def __init__(self, cin, cout, kernel, stride, expand, sd_prob, eps):
        super().__init__()
        hidden = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=eps)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=eps)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=eps)
        self.use_res_connect = stride == 1 and cin == cout
        self.sd_prob = sd_prob
        self.out_channels = cout

    def forward(self, x):
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return _residual(out, x, self.sd_prob, self.training) if self.use_res_connect else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0..4 (Google's edge variants of Tan & Le 2019).

    The Lite variants drop squeeze-excitation, use ReLU6, keep the stem (32) and head
    (1280) widths and the first and last stages' depth fixed across the compound
    scaling, and use BatchNorm eps 1e-3. Module names follow the ``efficientnet_pytorch``
    layout (``_conv_stem``, ``_blocks.N._expand_conv``, ``_fc`` ...), so the published
    ImageNet files load with ``strict=True``. Inputs are normalised as the TensorFlow
    release expects: ``(255 x - 127) / 128`` for ``x`` in [0, 1] (:data:`LITE_MEAN`, :data:`LITE_STD`).
    """

    def __init__(self, variant="lite0", num_classes=0, in_channels=3, stochastic_depth=0.2, dropout=None):
        super().__init__()
        if variant not in _EFFNET_LITE:
            raise ShapekitError(f"variant: expected one of {sorted(_EFFNET_LITE)}, got {variant!r}")
        width, depth, drop, _ = _EFFNET_LITE[variant]
        dropout = drop if dropout is None else dropout
        eps = 1e-3
        base = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
        last = len(base) - 1
        cfg = [(e, k, s, _make_divisible(c * width),
                n if i in (0, last) else int(math.ceil(n * depth))) for i, (e, k, s, c, n) in enumerate(base)]
        self._conv_stem = nn.Conv2d(in_channels, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=eps)
        total = sum(c[-1] for c in cfg)
        blocks, cin = [], 32
        for e, k, s, cout, n in cfg:
            for i in range(n):
                blocks.append(_LiteBlock(cin, cout, k, s if i == 0 else 1, e, stochastic_depth * len(blocks) / total,
                                         eps))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self.num_features = 1280
        self._conv_head = nn.Conv2d(cin, self.num_features, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(self.num_features, eps=eps)
        if num_classes:
            self._dropout = nn.Dropout(dropout)
            self._fc = nn.Linear(self.num_features, num_classes)
        _init_weights(self)

    def forward_features(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x):
        return self._fc(self._dropout(self.forward_features(x).mean((2, 3))))


LITE_MEAN = (127.0 / 255,) * 3  # the TensorFlow release's (pixel - 127) / 128
LITE_STD = (128.0 / 255,) * 3


# --------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # ResNet v1.5: stride here
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class ResNet(nn.Module):
    """ResNet-18/34/50 (He et al. 2016, v1.5 strides); torchvision key layout."""

    def __init__(self, block, layers, num_classes=0, in_channels=3):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make(block, 64, layers[0], 1)
        self.layer2 = self._make(block, 128, layers[1], 2)
        self.layer3 = self._make(block, 256, layers[2], 2)
        self.layer4 = self._make(block, 512, layers[3], 2)
        self.num_features = 512 * block.expansion
        if num_classes:
            self.fc = nn.Linear(self.num_features, num_classes)
        _init_weights(self)

    def _make(self, block, planes, n, stride):
        down = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * block.expansion))
        blocks = [block(self.inplanes, planes, stride, down)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def forward_features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.fc(self.forward_features(x).mean((2, 3)))


# --------------------------------------------------------------------- DenseNet
class _DenseLayer(nn.Module):
    def __init__(self, cin, growth, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, n, cin, growth, bn_size):
        super().__init__()
        for i in range(n):
            self[f"denselayer{i + 1}"] = _DenseLayer(cin + i * growth, growth, bn_size)

    def forward(self, x):
        feats = [x]
        for layer in self.values():
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


class _Transition(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet(nn.Module):
    """DenseNet-121 (Huang et al. 2017); torchvision key layout."""

    def __init__(self, growth=32, blocks=(6, 12, 24, 16), init_features=64, bn_size=4, num_classes=0,
                 in_channels=3):
        super().__init__()
        f = nn.Sequential()
        f.add_module("conv0", nn.Conv2d(in_channels, init_features, 7, 2, 3, bias=False))
        f.add_module("norm0", nn.BatchNorm2d(init_features))
        f.add_module("relu0", nn.ReLU(inplace=True))
        f.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        c = init_features
        for i, n in enumerate(blocks):
            f.add_module(f"denseblock{i + 1}", _DenseBlock(n, c, growth, bn_size))
            c += n * growth
            if i != len(blocks) - 1:
                f.add_module(f"transition{i + 1}", _Transition(c, c // 2))
                c //= 2
        f.add_module("norm5", nn.BatchNorm2d(c))
        self.features = f
        self.num_features = c
        if num_classes:
            self.classifier = nn.Linear(c, num_classes)
        _init_weights(self)

    def forward_features(self, x):
        return torch.relu(self.features(x))

    def forward(self, x):
        return self.classifier(self.forward_features(x).mean((2, 3)))


# --------------------------------------------------------------------- small CNNs
class _Inception(nn.Module):
    """GoogLeNet inception module: 1x1, 1x1->3x3, 1x1->5x5 and pool->1x1 branches, concatenated."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.b1 = ConvNormAct(cin, c1, 1, act=nn.ReLU)
        self.b3 = nn.Sequential(ConvNormAct(cin, c3r, 1, act=nn.ReLU), ConvNormAct(c3r, c3, 3, act=nn.ReLU))
        self.b5 = nn.Sequential(ConvNormAct(cin, c5r, 1, act=nn.ReLU), ConvNormAct(c5r, c5, 5, act=nn.ReLU))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), ConvNormAct(cin, cp, 1, act=nn.ReLU))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class InceptionCNN(nn.Module):
    """Small inception-module CNN for 96x96 grey faces (nose-landmark report style)."""

    def __init__(self, in_channels=1):
        super().__init__()
        self.stem = nn.Sequential(ConvNormAct(in_channels, 32, 3, act=nn.ReLU), ConvNormAct(32, 64, 3, 2, act=nn.ReLU))
        i1 = _Inception(64, 32, 48, 64, 8, 16, 16)
        i2 = _Inception(i1.out_channels, 64, 64, 96, 16, 32, 32)
        i3 = _Inception(i2.out_channels, 96, 96, 128, 16, 32, 32)
        self.features = nn.Sequential(i1, nn.MaxPool2d(2), i2, nn.MaxPool2d(2), i3, nn.MaxPool2d(2))
        self.num_features = i3.out_channels
        _init_weights(self)

    def forward_features(self, x):
        return self.features(self.stem(x))


class SimpleCNN(nn.Module):
    """Baseline CNN: four conv-BN-ReLU-pool stages (32-64-128-256 channels)."""

    def __init__(self, in_channels=3, channels=(32, 64, 128, 256)):
        super().__init__()
        layers, c = [], in_channels
        for co in channels:
            layers += [ConvNormAct(c, co, 3, act=nn.ReLU), nn.MaxPool2d(2)]
            c = co
        self.features = nn.Sequential(*layers)
        self.num_features = c
        _init_weights(self)

    def forward_features(self, x):
        return self.features(x)


class MLPModel(nn.Module):
    """One-hidden-layer baseline: flattened pixels -> hidden ReLU layer -> ``2 L`` coordinates."""

    def __init__(self, n_points, in_channels, input_size, hidden=100):
        super().__init__()
        self.n_points = n_points
        self.hidden = nn.Linear(in_channels * input_size * input_size, hidden)
        self.out = nn.Linear(hidden, 2 * n_points)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        # Centre the pixels so the hidden units start near their linear range.
        return self.out(torch.relu(self.hidden(x.flatten(1) - 0.5))).view(-1, self.n_points, 2)


def _init_weights(module):
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------- the landmark model
class LandmarkModel(nn.Module):
    """Input normalisation (+ grey->3 channel 1x1 conv) -> backbone features -> head.

    ``forward(x)`` takes images ``(B, C, S, S)`` in [0, 1] and returns coordinates
    ``(B, L, 2)`` in normalised units. With a DSNT head, ``forward_with_heatmaps(x)``
    also returns the heatmaps ``(B, L, H, W)`` (each a distribution summing to 1).
    """

    def __init__(self, backbone, head, in_channels=3, backbone_channels=3, imagenet_norm=True, norm=None):
        super().__init__()
        self.adapter = None
        if in_channels != backbone_channels:
            # Grey -> RGB by a learnable 1x1 conv started as "copy the grey value".
            self.adapter = nn.Conv2d(in_channels, backbone_channels, 1)
            nn.init.constant_(self.adapter.weight, 1.0 / in_channels)
            nn.init.zeros_(self.adapter.bias)
        if norm is not None:
            mean, std = norm
        elif imagenet_norm and backbone_channels == 3:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        else:
            mean, std = (0.5,) * backbone_channels, (0.25,) * backbone_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.backbone = backbone
        self.head = head
        self.has_heatmaps = isinstance(head, DSNTHead)

    def _features(self, x):
        if self.adapter is not None:
            x = self.adapter(x)
        return self.backbone.forward_features((x - self.mean) / self.std)

    def forward(self, x):
        return self.head(self._features(x))

    def forward_with_heatmaps(self, x):
        """Return ``(coords (B, L, 2) normalised, heatmaps (B, L, H, W))``; DSNT heads only."""
        if not self.has_heatmaps:
            raise ShapekitError("forward_with_heatmaps: this model has a regression head, not a DSNT head")
        return self.head.forward_with_heatmaps(self._features(x))


def _make_head(head, num_features, n_points, input_size, stride, dropout=0.0, heatmap_stride=None,
               head_channels=128):
    if head == "regression":
        return RegressionHead(num_features, n_points, dropout=dropout)
    heatmap_stride = heatmap_stride or max(4, stride // 4)
    n_up = int(round(math.log2(stride / heatmap_stride)))
    if n_up < 0 or 2 ** n_up * heatmap_stride != stride:
        raise ShapekitError(f"heatmap_stride: must divide the backbone stride {stride} by a power of 2, got "
                            f"{heatmap_stride}")
    return DSNTHead(num_features, n_points, n_upsample=n_up, channels=head_channels)


def _build(backbone, stride, n_points, in_channels, input_size, head, pretrained=None, dropout=0.0,
           heatmap_stride=None, head_channels=128, backbone_channels=3, imagenet_norm=True, norm=None):
    if input_size % stride and head == "dsnt":
        raise ShapekitError(f"input_size: {input_size} must be a multiple of {stride} for a DSNT head")
    if pretrained:
        load_pretrained(backbone, pretrained)
    h = _make_head(head, backbone.num_features, n_points, input_size, stride, dropout, heatmap_stride, head_channels)
    return LandmarkModel(backbone, h, in_channels, backbone_channels, imagenet_norm, norm)


#: The built-in builders as ``(name, builder, family, description)``, in the order they are
#: defined; :mod:`shapekit.nn.registry` registers them (see ``register_model`` for the
#: builder contract).
BUILTIN_MODELS: list = []


def _builtin(name, family, description):
    def deco(fn):
        BUILTIN_MODELS.append((name, fn, family, description))
        return fn

    return deco


@_builtin("mobilenetv2", "mobilenetv2", "MobileNetV2, width multiplier `width` (student)")
def mobilenetv2(n_points=68, in_channels=3, input_size=224, head="regression", width=1.0, **kw):
    return _build(MobileNetV2(width=width), 32, n_points, in_channels, input_size, head, **kw)


for _v in _EFFNET:
    def _eff(n_points=68, in_channels=3, input_size=224, head="regression", _v=_v, stochastic_depth=0.2, **kw):
        return _build(EfficientNet(_v, stochastic_depth=stochastic_depth), 32, n_points, in_channels, input_size,
                      head, **kw)
    _builtin(f"efficientnet_{_v}", "efficientnet", f"EfficientNet-{_v.upper()} (compound scaling; teacher)")(_eff)

for _v in _EFFNET_LITE:
    def _lite(n_points=68, in_channels=3, input_size=224, head="regression", _v=_v, stochastic_depth=0.2, **kw):
        return _build(EfficientNetLite(_v, stochastic_depth=stochastic_depth), 32, n_points, in_channels,
                      input_size, head, norm=(LITE_MEAN, LITE_STD), **kw)
    _builtin(f"efficientnet_{_v}", "efficientnet_lite",
             f"EfficientNet-{_v.capitalize()} (no squeeze-excitation, ReLU6; native {_EFFNET_LITE[_v][3]} px)")(_lite)

_RESNETS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)),
            "resnet50": (Bottleneck, (3, 4, 6, 3))}
for _n, (_b, _l) in _RESNETS.items():
    def _res(n_points=68, in_channels=3, input_size=224, head="regression", _b=_b, _l=_l, **kw):
        return _build(ResNet(_b, _l), 32, n_points, in_channels, input_size, head, **kw)
    _builtin(_n, "resnet", f"{_n} (torchvision layout; ImageNet weights loadable)")(_res)


@_builtin("densenet121", "densenet", "DenseNet-121 (ImageNet weights loadable)")
def densenet121(n_points=68, in_channels=3, input_size=224, head="regression", **kw):
    return _build(DenseNet(), 32, n_points, in_channels, input_size, head, **kw)


@_builtin("inception_cnn", "small", "inception-module CNN for 96x96 grey faces")
def inception_cnn(n_points=15, in_channels=1, input_size=96, head="regression", **kw):
    return _build(InceptionCNN(in_channels), 16, n_points, in_channels, input_size, head,
                  backbone_channels=in_channels, imagenet_norm=False, **kw)


@_builtin("simple_cnn", "small", "baseline CNN: 4 conv stages")
def simple_cnn(n_points=68, in_channels=3, input_size=96, head="regression", channels=(32, 64, 128, 256), **kw):
    return _build(SimpleCNN(in_channels, tuple(channels)), 2 ** len(channels), n_points, in_channels, input_size, head,
                  backbone_channels=in_channels, imagenet_norm=False, **kw)


@_builtin("mlp", "small", "one-hidden-layer baseline (flattened pixels)")
def mlp(n_points=68, in_channels=1, input_size=96, head="regression", hidden=100, **kw):
    if head != "regression":
        raise ShapekitError("head: the mlp model has no feature map, so only head='regression' is possible")
    if kw.get("pretrained"):
        raise ShapekitError("pretrained: the mlp model has no ImageNet weights")
    return MLPModel(n_points, in_channels, input_size, hidden)


# --------------------------------------------------------------------- timm backbones
class _TimmBackbone(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.num_features = model.num_features

    def forward_features(self, x):
        return self.model.forward_features(x)


def build_timm(name, n_points=68, in_channels=3, input_size=224, head="regression", pretrained=None, **kw):
    """Return a landmark model on a timm backbone (``pretrained`` = local weights file of that timm model)."""
    try:
        import timm  # local: an optional dependency (the timm extra)
    except ImportError:
        raise ShapekitError(f"model timm/{name}: timm is not installed (pip install shapekit[timm])") from None
    try:
        m = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    except Exception as exc:  # timm raises RuntimeError for unknown names
        raise ShapekitError(f"model timm/{name}: {exc}") from exc
    if pretrained:
        state = _read_state_dict(pretrained)
        m.load_state_dict({k: v for k, v in state.items() if not k.startswith(("fc.", "classifier.", "head."))},
                          strict=False)
    stride = 32
    return _build(_TimmBackbone(m), stride, n_points, in_channels, input_size, head, **kw)


# --------------------------------------------------------------------- pretrained weights
_CLASSIFIER_KEYS = ("fc.", "classifier.", "_fc.")


def _read_state_dict(path):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ShapekitError(f"pretrained: no such file {path}") from None
    except Exception as exc:
        raise ShapekitError(f"pretrained: {path} is not a readable torch state dict ({exc})") from exc
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ShapekitError(f"pretrained: {path} holds a {type(obj).__name__}, not a state dict")
    return {re.sub(r"^module\.", "", k): v for k, v in obj.items()}


def _timm_to_torchvision(state, backbone):
    """Return ``state`` renamed from timm's layout to torchvision's for the given backbone."""
    if isinstance(backbone, ResNet):
        return state  # timm's ResNet uses torchvision's names
    if isinstance(backbone, DenseNet):
        return state  # timm's DenseNet-121 keeps torchvision's feature names
    if not isinstance(backbone, (MobileNetV2, EfficientNet)):
        return state
    out = {}
    bn_suffix = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    last = len(backbone.features) - 1
    for k, v in state.items():
        parts = k.split(".")
        new = None
        if parts[0] == "conv_stem":
            new = "features.0.0." + parts[1]
        elif parts[0] == "bn1" and parts[1] in bn_suffix:
            new = "features.0.1." + parts[1]
        elif parts[0] == "conv_head":
            new = f"features.{last}.0." + parts[1]
        elif parts[0] == "bn2" and parts[1] in bn_suffix:
            new = f"features.{last}.1." + parts[1]
        elif parts[0] == "blocks":
            s, j, name, rest = int(parts[1]), int(parts[2]), parts[3], ".".join(parts[4:])
            if isinstance(backbone, MobileNetV2):
                idx = 1 + sum(len(b) for b in _timm_stage_sizes(backbone)[:s]) + j
                new = f"features.{idx}.conv." + _mbv2_block_map(backbone.features[idx], name) + rest
            else:
                new = f"features.{s + 1}.{j}.block." + _eff_block_map(backbone.features[s + 1][j], name) + rest
        if new is not None:
            out[new] = v
        else:
            out[k] = v
    return out


def _timm_stage_sizes(backbone):
    # MobileNetV2 blocks grouped as timm groups them: stages of equal output width.
    stages, cur, cout = [], [], None
    for m in list(backbone.features)[1:-1]:
        if cout is not None and m.out_channels != cout:
            stages.append(cur)
            cur = []
        cur.append(m)
        cout = m.out_channels
    stages.append(cur)
    return stages


def _mbv2_block_map(block, name):
    expand = len(block.conv) == 4
    if expand:
        table = {"conv_pw": "0.0.", "bn1": "0.1.", "conv_dw": "1.0.", "bn2": "1.1.", "conv_pwl": "2.", "bn3": "3."}
    else:
        table = {"conv_dw": "0.0.", "bn1": "0.1.", "conv_pw": "1.", "bn2": "2."}
    return table[name]


def _eff_block_map(block, name):
    expand = len(block.block) == 4
    if expand:
        table = {"conv_pw": "0.0.", "bn1": "0.1.", "conv_dw": "1.0.", "bn2": "1.1.", "se": "2.",
                 "conv_pwl": "3.0.", "bn3": "3.1."}
    else:
        table = {"conv_dw": "0.0.", "bn1": "0.1.", "se": "1.", "conv_pw": "2.0.", "bn2": "2.1."}
    return table[name]


def _fix_se_names(state):
    return {k.replace(".conv_reduce.", ".fc1.").replace(".conv_expand.", ".fc2."): v for k, v in state.items()}


def _fix_densenet_legacy(state):
    # Old torchvision DenseNet checkpoints name keys "norm.1" / "conv.2"; newer ones "norm1" / "conv2".
    pat = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
    out = {}
    for k, v in state.items():
        m = pat.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def load_pretrained(backbone, path, layout="auto"):
    """Load an ImageNet state dict (torchvision or timm layout) into ``backbone``; return the key report.

    The classifier is dropped. Every backbone parameter and buffer must be found with
    the right shape, otherwise a :class:`ShapekitError` names the missing keys.
    ``layout`` is ``"auto"``, ``"torchvision"`` or ``"timm"``.
    """
    if isinstance(backbone, LandmarkModel):
        backbone = backbone.backbone
    state = path if isinstance(path, dict) else _read_state_dict(path)
    if layout not in ("auto", "torchvision", "timm"):
        raise ShapekitError(f"layout: expected auto, torchvision or timm, got {layout!r}")
    if layout == "timm" or (layout == "auto" and any(k.startswith(("conv_stem.", "blocks.")) for k in state)):
        state = _timm_to_torchvision(state, backbone)
    state = _fix_se_names(state)
    if isinstance(backbone, DenseNet):
        state = _fix_densenet_legacy(state)
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_KEYS)}
    own = backbone.state_dict()
    # Old checkpoints lack BatchNorm's num_batches_tracked counters; they carry no weights.
    state.update({k: v for k, v in own.items() if k.endswith("num_batches_tracked") and k not in state})
    missing = [k for k in own if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        raise ShapekitError(
            f"pretrained: the weights do not fit {type(backbone).__name__}: "
            + (f"{len(missing)} missing keys (e.g. {missing[:3]})" if missing else "")
            + (f" wrong shapes: {wrong[:3]}" if wrong else ""))
    unexpected = [k for k in state if k not in own]
    backbone.load_state_dict({k: state[k] for k in own}, strict=True)
    return {"loaded": len(own), "unexpected": unexpected}


BACKBONES = {
    "mobilenetv2": lambda num_classes=1000, **kw: MobileNetV2(num_classes=num_classes, **kw),
    **{f"efficientnet_{v}": partial(lambda v, num_classes=1000, **kw: EfficientNet(v, num_classes=num_classes, **kw), v)
       for v in _EFFNET},
    **{n: partial(lambda b, l, num_classes=1000, **kw: ResNet(b, l, num_classes=num_classes, **kw), b, l)
       for n, (b, l) in _RESNETS.items()},
    **{f"efficientnet_{v}": partial(lambda v, num_classes=1000, **kw: EfficientNetLite(v, num_classes=num_classes,
                                                                                       **kw), v)
       for v in _EFFNET_LITE},
    "densenet121": lambda num_classes=1000, **kw: DenseNet(num_classes=num_classes, **kw),
}


def imagenet_preprocessing(name):
    """Return ``(side, mean, std)``: the input side in pixels and the per-channel normalisation
    of images in [0, 1] with which the ImageNet classifier ``name`` was trained (torchvision's
    224 px and ImageNet statistics; EfficientNet-Lite's native sides and TensorFlow scaling).
    """
    if name not in BACKBONES:
        raise ShapekitError(f"name: no ImageNet backbone {name!r}; known: {sorted(BACKBONES)}")
    if name.startswith("efficientnet_lite"):
        return _EFFNET_LITE[name.rsplit("_", 1)[1]][3], LITE_MEAN, LITE_STD
    return 224, IMAGENET_MEAN, IMAGENET_STD


def create_backbone(name, num_classes=1000, **kw):
    """Return the bare ImageNet classifier network ``name`` (torchvision layout), e.g. to export weights."""
    if name not in BACKBONES:
        raise ShapekitError(f"name: no ImageNet backbone {name!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[name](num_classes=num_classes, **kw)

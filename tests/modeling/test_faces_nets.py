"""The PyTorch port of PNet/RNet/ONet against the original Keras networks' outputs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.faces.nets import load_nets

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "mtcnn" / "net_reference.npz"
TOL = 1e-5


@pytest.fixture(scope="module")
def nets():
    return load_nets()


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(REFERENCE))


def _nchw(a):
    return torch.from_numpy(a).permute(0, 3, 1, 2)


@pytest.mark.parametrize("key", ["pnet", "pnet_img"])
def test_pnet_matches_keras(nets, ref, key):
    with torch.no_grad():
        reg, prob = nets[0](_nchw(ref[f"{key}_in"]))
    reg = reg.permute(0, 2, 3, 1).numpy()
    prob = prob.permute(0, 2, 3, 1).numpy()
    assert reg.shape == ref[f"{key}_out0"].shape
    assert prob.shape == ref[f"{key}_out1"].shape
    np.testing.assert_allclose(reg, ref[f"{key}_out0"], atol=TOL, rtol=0)
    np.testing.assert_allclose(prob, ref[f"{key}_out1"], atol=TOL, rtol=0)


def test_rnet_matches_keras(nets, ref):
    with torch.no_grad():
        reg, prob = nets[1](_nchw(ref["rnet_in"]))
    np.testing.assert_allclose(reg.numpy(), ref["rnet_out0"], atol=TOL, rtol=0)
    np.testing.assert_allclose(prob.numpy(), ref["rnet_out1"], atol=TOL, rtol=0)


def test_onet_matches_keras(nets, ref):
    with torch.no_grad():
        reg, lm, prob = nets[2](_nchw(ref["onet_in"]))
    np.testing.assert_allclose(reg.numpy(), ref["onet_out0"], atol=TOL, rtol=0)
    np.testing.assert_allclose(lm.numpy(), ref["onet_out1"], atol=TOL, rtol=0)
    np.testing.assert_allclose(prob.numpy(), ref["onet_out2"], atol=TOL, rtol=0)


def test_real_face_crop_is_a_face(nets, ref):
    """The last RNet/ONet input is a real face crop: both nets must say so."""
    with torch.no_grad():
        _, p_r = nets[1](_nchw(ref["rnet_in"][-1:]))
        _, _, p_o = nets[2](_nchw(ref["onet_in"][-1:]))
    assert float(p_r[0, 1]) > 0.7 and float(p_o[0, 1]) > 0.8

"""Model files: what a model gains in memory that is not a weight does not reach the file."""

from __future__ import annotations

import torch

from fpscf import build_model, load_model


def test_generated_code_constants_are_not_saved_and_the_file_loads(tmp_path):
    """e3nn's generated tensor-product code can hold ``_tensor_constant`` buffers after a deep copy
    of a trained model; they are rebuilt with the architecture, so the file leaves them out."""
    model = build_model([1, 8], r_max=4.0, num_channels=8)
    generated = model.encoder.interactions[0].product.steps[0].product.tp._compiled_main_left_right
    generated.register_buffer("_tensor_constant0", torch.ones(3, dtype=torch.float64))
    assert any("_tensor_constant0" in key for key in model.state_dict())
    model.save(str(tmp_path / "model.fpscf"))
    loaded = load_model(str(tmp_path / "model.fpscf"))
    weights = {k: v for k, v in model.state_dict().items() if "_tensor_constant" not in k}
    assert weights.keys() == loaded.state_dict().keys()
    assert all(torch.equal(weights[k], loaded.state_dict()[k]) for k in weights)

"""QuantMLP's circuit-exact forward pass: the accumulator rounding Concrete ML applies before a lookup."""

from types import SimpleNamespace

import torch

from fhe_estimators.module import QuantMLP


def _layer(bias: float, weight_scale: float, output_scale: float):
    """Stand-ins for a brevitas linear layer and the activation after it (only the scales matter)."""
    linear = SimpleNamespace(
        bias=torch.tensor([bias]), quant_weight=lambda: SimpleNamespace(scale=torch.tensor(weight_scale))
    )
    activation = SimpleNamespace(quant_act_scale=lambda: torch.tensor(output_scale))
    return linear, activation


def test_the_accumulator_loses_its_low_bits_round_half_up():
    # Unit 1, output step 8: 3 low bits go; 12 -> 16, 11 -> 8, -4 -> 0 (half up), -5 -> -8.
    linear, activation = _layer(bias=0.5, weight_scale=1.0, output_scale=8.0)
    z = torch.tensor([[12.5], [11.5], [-3.5], [-4.5]], requires_grad=True)
    rounded = QuantMLP._round_accumulator(z, linear, torch.tensor(1.0), activation)
    assert rounded.detach().flatten().tolist() == [16.5, 8.5, 0.5, -7.5]
    rounded.sum().backward()
    assert z.grad.flatten().tolist() == [1.0] * 4  # straight through


def test_a_collapsed_input_scale_rounds_every_accumulator_to_zero_without_overflow():
    # An input step of 2^-70 against an output step of 1: 70 bits to remove, more than an int64
    # power of two holds (this raised OverflowError while training two hidden layers).
    linear, activation = _layer(bias=0.25, weight_scale=1.0, output_scale=1.0)
    z = 0.25 + torch.tensor([[3.0], [-5.0]]) * 2.0**-70
    rounded = QuantMLP._round_accumulator(z, linear, torch.tensor(2.0**-70), activation)
    assert torch.isfinite(rounded).all()
    assert rounded.flatten().tolist() == [0.25, 0.25]  # only the bias is left


def test_the_most_bits_a_float32_ratio_asks_for_still_round_to_zero():
    # A ratio just under float32's largest value asks for 128 bits; 2^128 is infinite in float32,
    # which would make 0 x inf = nan without the cap (module.MAX_ROUNDED_BITS).
    linear, activation = _layer(bias=0.0, weight_scale=1.0, output_scale=3.0e38)
    z = torch.tensor([[5.0], [-9.0]])
    rounded = QuantMLP._round_accumulator(z, linear, torch.tensor(1.0), activation)
    assert rounded.flatten().tolist() == [0.0, 0.0]

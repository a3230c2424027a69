"""QuantMLP's circuit-exact forward pass: the accumulator rounding Concrete ML applies before a
lookup, and the scales it reads (the ones brevitas uses, without quantizing anything twice)."""

import torch

from fhe_estimators.module import QuantMLP, activation_scale, round_accumulator


def test_the_accumulator_loses_its_low_bits_round_half_up():
    # Unit 1, output step 8: 3 low bits go; 12 -> 16, 11 -> 8, -4 -> 0 (half up), -5 -> -8.
    z = torch.tensor([[12.5], [11.5], [-3.5], [-4.5]], requires_grad=True)
    rounded = round_accumulator(z, torch.tensor([0.5]), torch.tensor(1.0), torch.tensor(8.0))
    assert rounded.detach().flatten().tolist() == [16.5, 8.5, 0.5, -7.5]
    rounded.sum().backward()
    assert z.grad.flatten().tolist() == [1.0] * 4  # straight through


def test_a_collapsed_input_scale_rounds_every_accumulator_to_zero_without_overflow():
    # An input step of 2^-70 against an output step of 1: 70 bits to remove, more than an int64
    # power of two holds (this raised OverflowError while training two hidden layers).
    z = 0.25 + torch.tensor([[3.0], [-5.0]]) * 2.0**-70
    rounded = round_accumulator(z, torch.tensor([0.25]), torch.tensor(2.0**-70), torch.tensor(1.0))
    assert torch.isfinite(rounded).all()
    assert rounded.flatten().tolist() == [0.25, 0.25]  # only the bias is left


def test_the_most_bits_a_float32_ratio_asks_for_still_round_to_zero():
    # A ratio just under float32's largest value asks for 128 bits; 2^128 is infinite in float32,
    # which would make 0 x inf = nan without the cap (module.MAX_ROUNDED_BITS).
    z = torch.tensor([[5.0], [-9.0]])
    rounded = round_accumulator(z, torch.tensor([0.0]), torch.tensor(1.0), torch.tensor(3.0e38))
    assert rounded.flatten().tolist() == [0.0, 0.0]


def _train_steps(module: QuantMLP, n_steps: int) -> None:
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    X, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    module.train()
    for _ in range(n_steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(X), y).backward()
        optimizer.step()


def test_the_rounding_reads_the_scales_brevitas_gives_while_statistics_are_collected_and_after():
    # activation_scale must be quant_act_scale() to the bit in both phases of the learned scale
    # (running statistics for the first collect_stats_steps steps, a parameter after), in
    # training mode, and leave the quantizers' modes as they were; the weight scale the hook
    # keeps must be the one quant_weight() gives for the weights of the last forward.
    torch.manual_seed(0)
    module = QuantMLP(6, 3, (8, 5), collect_stats_steps=4)
    for n_steps in (2, 5):  # inside, then past, the statistics phase
        _train_steps(module, n_steps)
        for activation in module.activations:
            assert torch.equal(activation_scale(activation), activation.quant_act_scale())
            assert all(part.training for part in activation.modules())
        module(torch.randn(4, 6))
        for linear in module.linears:
            assert torch.equal(linear.weight_quant.last_scale, linear.quant_weight().scale.detach())
    scaling = module.activations[0].act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl
    assert scaling.counter > scaling.collect_stats_steps  # the second phase was reached

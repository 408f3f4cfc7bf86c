"""`make_optimizer(..., fused=True)`: torch's fused kernels, the same updates up to float rounding; the default unchanged."""

import pytest
import torch
from torch import nn

from nas.training import make_optimizer
from nas.training._recipe import Recipe


def _weights(seed: int = 0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(shape, generator=g)) for shape in ((64, 32), (32,), (10, 64), (10,))]


@pytest.mark.parametrize("spec", ["adamw", "adam", "sgd"])
def test_a_fused_optimizer_steps_the_weights_the_per_parameter_loop_steps(spec):
    loop, fused = _weights(), _weights()
    a, b = make_optimizer(spec, loop, 0.01, 1e-4), make_optimizer(spec, fused, 0.01, 1e-4, fused=True)
    assert not a.defaults.get("fused") and not a.defaults.get("foreach")  # the default: the per-parameter loop
    assert b.defaults["fused"] is True if spec != "sgd" else b.defaults["foreach"] is True
    g = torch.Generator().manual_seed(1)
    for step in range(20):
        for i, (p, q) in enumerate(zip(loop, fused)):
            if step % 3 == 0 and i == 1:  # a weight no subnet used this step: no gradient, left alone by both
                p.grad = q.grad = None
                continue
            grad = torch.randn(p.shape, generator=g)
            p.grad, q.grad = grad.clone(), grad.clone()
        a.step()
        b.step()
    moved = max(float((p.detach() - w.detach()).abs().max()) for p, w in zip(loop, _weights()))
    worst = max(float((p.detach() - q.detach()).abs().max()) for p, q in zip(loop, fused))
    assert moved > 0.05 and worst < 1e-5


def test_a_callable_optimizer_is_built_as_it_builds_itself_and_recipe_build_passes_fused_on():
    made = make_optimizer(lambda params, lr: torch.optim.SGD(params, lr=lr), _weights(), 0.1, 0.0, fused=True)
    assert not made.defaults.get("fused")
    from nas.data import digits

    opt, _ = Recipe(epochs=1).build(_weights(), digits("flat"), fused=True)
    assert opt.defaults["fused"] is True and Recipe(epochs=1).build(_weights(), digits("flat"))[0].defaults["fused"] is None

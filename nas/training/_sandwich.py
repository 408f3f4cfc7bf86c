"""`sandwich`: largest, smallest and `n` random subnets per step, with in-place distillation (BigNAS)."""

from __future__ import annotations

from nas.training._base import STRATEGIES, Strategy, backward


@STRATEGIES.register("sandwich")
class Sandwich(Strategy):
    """The sandwich rule: each step trains the largest, the smallest and `n` random subnets.

    The largest learns from the labels; with distillation on (the default for class
    targets) the others learn from its detached outputs (in-place distillation), else from
    the labels too.

    Example:
        >>> Sandwich(n=2)
        Sandwich(n=2)

    Args:
        n: random subnets per step, besides the largest and the smallest. The default 4
            (BigNAS used 2) trains mid-size subnets enough that they rank like their
            from-scratch selves: on the digits `cnn`, n=2 left small kernel-5 subnets 5-9
            points below their from-scratch accuracy (`bench/ranking.py`).
    """

    distills_by_default = True
    supports_distill = True

    def __init__(self, n: int = 4):
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"The 'n' parameter of Sandwich must be an int >= 0, got {n!r}.")
        self.n = n

    def step(self, net, x, y, rng, loss, distill):
        configs = self.students(net, rng)
        with net.switching() as switch:  # one switch per subnet
            switch(net.largest())
            out = net(x)
            value = self.teacher_loss(out, y, loss)
            backward(value)
            teacher = out.detach()
            for config in configs:
                switch(config)
                backward(self.student_loss(net(x), teacher, y, loss, distill))
        return value.item()

    def students(self, net, rng) -> list:
        """The subnets a step trains after the largest: the smallest and `draw`'s."""
        return [net.smallest()] + self.draw(net, rng)

    def draw(self, net, rng) -> list:
        """The step's `n` random subnets, uniform over the space (a variant may draw otherwise)."""
        return [net.sample(rng) for _ in range(self.n)]

    def teacher_loss(self, out, y, loss):
        """The largest subnet's loss, on the labels."""
        return loss(out, y)

    def student_loss(self, student, teacher, y, loss, distill):
        """A student's loss: distillation from the largest subnet's detached outputs when on, else the labels'."""
        return distill(student, teacher) if distill is not None else loss(student, y)

"""Fused training paths of sliced layers: one autograd node per layer, gradients added into the slice.

Through plain autograd a sliced weight costs, per subnet and per tensor, a view node whose
backward fills a zero buffer of the full weight's size, copies the slice's gradient into
it, and then adds that whole buffer into ``.grad``. The functions here run the layer's
forward on views of the weights and, in ``loss.backward()``, add the slices' gradients
straight into the leading blocks of the full weights' ``.grad`` (allocated once, as
autograd does, when it is None): no full-size buffer per subnet.

The gradients are the ones autograd computes for the same sliced ops (the same matrix
products in the same layouts; `tests/test_fused.py` checks them bit for bit), and ``.grad``
ends up as autograd's own accumulation leaves it, so optimizers, clipping, ``zero_grad``
(either way) and reducers that read ``.grad`` after ``backward`` see no difference. Where
autograd itself would not accumulate into ``.grad`` (``torch.autograd.grad``,
``backward(inputs=...)`` without the weight, ``create_graph=True``), the backward returns
full-size gradients as a view's backward does, so those paths behave as before. Hooks
registered on a weight tensor (``register_hook``) do not see a fused layer's gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nas.elastic._base import crop


def _adds_in_place(ctx, k: int, param: torch.Tensor) -> bool:
    """Whether this backward accumulates into the leaf ``param.grad`` (tensor input `k`), so the slice may be added there.

    True in ``loss.backward()`` (and ``backward(inputs=...)`` naming the weight); False under
    ``create_graph`` (autograd then accumulates out of place, with a graph), in
    ``torch.autograd.grad`` (leaves' gradients are returned, never accumulated) and for a
    weight that is computed (a parametrisation), not a leaf.
    """
    if torch.is_grad_enabled() or param.grad_fn is not None:
        return False
    node = ctx.next_functions[k][0]
    if node is None:
        return False
    try:
        return torch._C._will_engine_execute_node(node)
    except RuntimeError:  # raised for leaves inside torch.autograd.grad
        return False


def _give(ctx, k: int, param: torch.Tensor | None, grad: torch.Tensor) -> torch.Tensor | None:
    """`grad` (of input `k` ``param``'s leading block) added into ``param.grad`` (returns None), or as a full-size gradient."""
    if param is None:
        return None
    n = grad.dim()
    if _adds_in_place(ctx, k, param):
        full = param.grad
        if full is None:  # as autograd's first accumulation: a zero buffer holding the slice
            full = torch.zeros_like(param)
            full.as_strided(grad.shape, full.stride()[:n], full.storage_offset()).copy_(grad)
            param.grad = full
        else:
            full.as_strided(grad.shape, full.stride()[:n], full.storage_offset()).add_(grad)
        return None
    full = param.new_zeros(param.shape)
    full[tuple(slice(0, s) for s in grad.shape)] = grad
    return full


def _replay(ctx, g: torch.Tensor, plain, inputs: tuple) -> tuple:
    """Gradients of ``plain(*inputs)`` (the same layer through plain autograd) with a graph: ``create_graph=True``."""
    wanted = [k for k, t in enumerate(inputs) if t is not None and ctx.needs_input_grad[k]]
    with torch.enable_grad():
        out = plain(*inputs)
        grads = torch.autograd.grad(out, [inputs[k] for k in wanted], g, create_graph=True, allow_unused=True)
    result: list = [None] * len(inputs)
    for k, grad in zip(wanted, grads):
        result[k] = grad
    return tuple(result)


def _lead(t: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """The leading block ``t[:s0, :s1, ...]`` as one view."""
    return t if t.shape == sizes else t.as_strided(sizes, t.stride()[: len(sizes)], t.storage_offset())


def _input_grad(g2: torch.Tensor, w: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """``d/dx`` of ``x2 @ w.T``, in the layout autograd's mm backward picks."""
    if x2.stride(0) == 1 and x2.stride(1) == x2.shape[0]:  # column-major input
        return w.t().mm(g2.t()).t()
    return g2.mm(w)


class _SlicedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, o, i):
        w = weight.as_strided((o, i), weight.stride(), weight.storage_offset())
        ctx.save_for_backward(x, w)
        ctx.params = weight, bias
        return F.linear(x, w, None if bias is None else bias[:o])

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        weight, bias = ctx.params
        if torch.is_grad_enabled():
            o, i = w.shape
            return (*_replay(ctx, g, lambda x, W, B: F.linear(x, _lead(W, (o, i)), None if B is None else B[:o]), (x, weight, bias)), None, None)
        needs = ctx.needs_input_grad
        g2, x2 = (g, x) if g.dim() == 2 else (g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1]))
        gb = _give(ctx, 2, bias, g2.sum(0)) if needs[2] else None
        gw = _give(ctx, 1, weight, g2.t().mm(x2)) if needs[1] else None
        gx = None
        if needs[0]:
            gx = _input_grad(g2, w, x2)
            gx = gx if g.dim() == 2 else gx.view(x.shape)
        return gx, gw, gb, None, None


class _SlicedLowRank(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, V, U, bias, r, i, o):
        v = V.as_strided((r, i), V.stride(), V.storage_offset())
        u = U.as_strided((o, r), U.stride(), U.storage_offset())
        h = F.linear(x, v)
        ctx.save_for_backward(x, h, v, u)
        ctx.params = V, U, bias
        return F.linear(h, u, None if bias is None else bias[:o])

    @staticmethod
    def backward(ctx, g):
        x, h, v, u = ctx.saved_tensors
        V, U, bias = ctx.params
        if torch.is_grad_enabled():
            (o, r), i = u.shape, v.shape[1]

            def plain(x, V, U, B):
                return F.linear(F.linear(x, _lead(V, (r, i))), _lead(U, (o, r)), None if B is None else B[:o])

            return (*_replay(ctx, g, plain, (x, V, U, bias)), None, None, None)
        needs = ctx.needs_input_grad
        flat = g.dim() == 2
        g2, h2, x2 = (g, h, x) if flat else (g.reshape(-1, g.shape[-1]), h.reshape(-1, h.shape[-1]), x.reshape(-1, x.shape[-1]))
        gb = _give(ctx, 3, bias, g2.sum(0)) if needs[3] else None
        gu = _give(ctx, 2, U, g2.t().mm(h2)) if needs[2] else None
        gh2 = _input_grad(g2, u, h2)
        gv = _give(ctx, 1, V, gh2.t().mm(x2)) if needs[1] else None
        gx = None
        if needs[0]:
            gx = _input_grad(gh2, v, x2)
            gx = gx if flat else gx.view(x.shape)
        return gx, gv, gu, gb, None, None, None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, blocks, *tensors):
        ctx.set_materialize_grads(False)
        ctx.blocks, ctx.params = blocks, tensors
        out = []
        for t, (sizes, strides, offset, shape) in zip(tensors, blocks):
            out.append(t.as_strided(sizes, strides, t.storage_offset() + offset).clone(memory_format=torch.contiguous_format).view(shape))
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        result: list = [None]
        grad_mode = torch.is_grad_enabled()
        for k, (t, (sizes, strides, offset, _), g) in enumerate(zip(ctx.params, ctx.blocks, grads), start=1):
            if g is None or not ctx.needs_input_grad[k]:
                result.append(None)
                continue
            g = g.reshape(sizes)
            full = t.grad
            if not grad_mode and _adds_in_place(ctx, k - 1, t) and (full is None or full.stride() == t.stride()):
                if full is None:  # as autograd's first accumulation: a zero buffer holding the block
                    full = torch.zeros_like(t)
                    full.as_strided(sizes, strides, full.storage_offset() + offset).copy_(g)
                    t.grad = full
                else:
                    full.as_strided(sizes, strides, full.storage_offset() + offset).add_(g)
                result.append(None)
                continue
            full = t.new_zeros(t.shape)  # a view's backward: the block's gradient in a full-size zero buffer
            if grad_mode:  # create_graph: as_strided_scatter keeps the graph
                full = torch.as_strided_scatter(full, g, sizes, strides, offset)
            else:
                full.as_strided(sizes, strides, full.storage_offset() + offset).copy_(g)
            result.append(full)
        return tuple(result)


def gathered(blocks: tuple, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Contiguous copies of strided blocks of `tensors` as one autograd node that adds the blocks' gradients into place.

    Each block is ``(sizes, strides, offset, shape)``: ``t.as_strided(sizes, strides,
    t.storage_offset() + offset)`` read into a new tensor of `shape` (a conv's cropped
    kernel, an attention layer's heads). `tensors` are contiguous.

    Example:
        >>> w = torch.arange(12.0).view(3, 4).requires_grad_()
        >>> (block,) = gathered((((2, 2), (4, 1), 1, (4,)),), w)
        >>> block.tolist()
        [1.0, 2.0, 5.0, 6.0]
        >>> block.sum().backward()
        >>> w.grad.tolist()
        [[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    return _Gather.apply(blocks, *tensors)


def cropped(t: torch.Tensor, sizes: tuple[int, ...], starts: tuple[int, ...]) -> torch.Tensor:
    """``crop(t, sizes, starts)`` as a contiguous tensor (`t` itself when nothing is cropped), through `gathered`.

    Example:
        >>> cropped(torch.arange(9.0).view(3, 3), (1, 1), (1, 1)).tolist()
        [[4.0]]
    """
    shape = t.shape
    n = len(sizes)
    if all(size == full and s == 0 for s, size, full in zip(starts, sizes, shape)):
        return t
    if not t.is_contiguous():
        return crop(t, sizes, starts).contiguous()
    stride = t.stride()
    sizes = (*sizes, *shape[n:])
    (block,) = _Gather.apply(((sizes, stride, sum(s * st for s, st in zip(starts, stride)), sizes),), t)
    return block


def sliced_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, o: int, i: int) -> torch.Tensor:
    """``F.linear(x, weight[:o, :i], bias[:o])`` as one autograd node adding its gradients into the slices.

    Example:
        >>> w, b = torch.ones(4, 3, requires_grad=True), torch.zeros(4, requires_grad=True)
        >>> sliced_linear(torch.ones(2, 2), w, b, 3, 2).sum().backward()
        >>> w.grad.tolist()
        [[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 0.0]]
    """
    return _SlicedLinear.apply(x, weight, bias, o, i)


def sliced_low_rank(x: torch.Tensor, V: torch.Tensor, U: torch.Tensor, bias: torch.Tensor | None, r: int, i: int, o: int) -> torch.Tensor:
    """``F.linear(F.linear(x, V[:r, :i]), U[:o, :r], bias[:o])`` as one autograd node adding its gradients into the slices.

    Example:
        >>> V, U = torch.ones(4, 3, requires_grad=True), torch.ones(5, 4, requires_grad=True)
        >>> sliced_low_rank(torch.ones(1, 2), V, U, None, 2, 2, 3).shape
        torch.Size([1, 3])
    """
    return _SlicedLowRank.apply(x, V, U, bias, r, i, o)

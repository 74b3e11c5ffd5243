"""First-order-only backward passes for psal's custom autograd functions.

psal's compiled backward passes (patch distances, the attention's aggregation) give
exact first-order gradients, but they are not themselves differentiable. Torch's
``once_differentiable`` only notices that when the incoming gradient requires grad, so
``torch.autograd.grad(..., create_graph=True)`` (a gradient penalty through an
attention layer) silently returned a gradient with no graph (the second-order term
dropped), or failed deep inside with a message about numpy. :func:`first_order_only`
refuses it at once, naming what to do instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["first_order_only"]


def first_order_only(
    what: str, compiled: Callable[..., bool] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a ``backward`` staticmethod: a clear error under double backward.

    The autograd engine runs ``backward`` in grad mode only when the graph of the
    gradient is being built (``create_graph=True``). ``compiled(ctx, *grads)`` says
    whether this call takes the compiled branch (None: always); if it does, double
    backward is refused with a RuntimeError naming ``what``. A pure-torch branch (other
    devices and dtypes) runs as it is, so its gradient keeps its graph and double
    backward stays exact there.
    """

    def decorate(backward: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(backward)
        def wrapper(ctx: Any, *grads: Any) -> Any:
            if torch.is_grad_enabled() and (compiled is None or compiled(ctx, *grads)):
                raise RuntimeError(
                    f"{what} cannot be differentiated twice on this device and dtype: its "
                    "compiled backward pass is first-order only, so "
                    "torch.autograd.grad(..., create_graph=True) (e.g. a gradient penalty "
                    "through this layer) is not supported here (the pure-torch path of "
                    "other devices supports it)"
                )
            return backward(ctx, *grads)

        return wrapper

    return decorate

"""Cross-entropy over the vocabulary without materialising the (B·T, V) logits.

The output projection and the loss are computed chunk by chunk; since the loss is the last thing
in the graph, the gradients of the chunk's hidden states and of the projection weight are computed
right there in the forward pass (softmax − one-hot), and the backward pass only scales them. The
matmuls are the same three a plain forward + backward does (logits, dL/dh, dL/dW); what goes is
the full logits tensor, its log-softmax and their gradients: 2 × B·T·V floats (256 MB at
8 × 256 tokens and a 32k vocabulary), allocated, filled and freed every step. The idea is Liger
Kernel's fused linear cross-entropy (Hsu et al. 2024); this is a plain PyTorch version.

    >>> import torch
    >>> h, w = torch.randn(6, 4), torch.randn(10, 4)
    >>> t = torch.tensor([1, 2, 3, -100, 5, 6])
    >>> ref = torch.nn.functional.cross_entropy(h @ w.T, t, ignore_index=-100)
    >>> bool(torch.allclose(linear_cross_entropy(h, w, t, chunk=4), ref))
    True
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def linear_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, chunk: int = 1024
) -> torch.Tensor:
    """Mean cross-entropy of `h @ weight.T` against `targets` (-100 left out), in float32.
    h (N, C), weight (V, C), targets (N,) -> scalar."""
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(h, weight, targets, chunk)
    with torch.no_grad():
        return _forward(h, weight, targets, chunk, grads=False)[0]


def _forward(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int, *, grads: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    valid = targets != IGNORE_INDEX  # (N,)
    n_valid = int(valid.sum())
    loss_sum = torch.zeros((), dtype=torch.float32, device=h.device)
    grad_h = torch.empty_like(h) if grads else None
    # a frozen output head (LoRA, kiban.finetune) needs no (V, C) gradient: skip that matmul
    grad_w = torch.zeros_like(weight, dtype=torch.float32) if grads and weight.requires_grad else None
    scale = 1.0 / max(n_valid, 1)
    for s in range(0, h.shape[0], chunk):
        hc, tc, vc = h[s : s + chunk], targets[s : s + chunk], valid[s : s + chunk]
        logits = (hc @ weight.T).float()  # (n, V)
        safe = tc.clamp(min=0)
        picked = logits.gather(1, safe[:, None]).squeeze(1)  # (n,)
        # one exp over the chunk serves both the log-sum-exp and the softmax, in place
        top = logits.amax(dim=-1)  # (n,)
        expd = logits.sub_(top[:, None]).exp_()  # (n, V) unnormalised softmax
        total = expd.sum(dim=-1)  # (n,)
        lse = top + total.log()  # (n,)
        loss_sum += ((lse - picked) * vc).sum()
        if grads:
            probs = expd.div_(total[:, None])  # softmax  # (n, V)
            probs[torch.arange(len(tc), device=h.device), safe] -= 1.0
            probs *= (vc.float() * scale)[:, None]  # d(mean loss)/d(logits)
            grad_h[s : s + chunk] = (probs.to(hc.dtype) @ weight.to(hc.dtype)).to(h.dtype)
            if grad_w is not None:
                grad_w += probs.T @ hc.float()  # (V, C)
    return loss_sum * scale, grad_h, grad_w


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, chunk):  # noqa: ANN001, ANN205 - autograd's signature
        loss, grad_h, grad_w = _forward(h, weight, targets, chunk, grads=True)
        ctx.has_grad_w = grad_w is not None
        ctx.save_for_backward(grad_h, grad_w.to(weight.dtype) if grad_w is not None else None)
        return loss

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out, grad_w * grad_out if ctx.has_grad_w else None, None, None

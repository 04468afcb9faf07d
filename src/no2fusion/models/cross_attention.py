"""Cross-modal attention: spatial satellite tokens query temporal meteorology tokens.

Sits in ``models/`` between the two encoders and the head. Each ``CrossAttentionLayer`` is
pre-norm: ``x = x + Attn(LN(x), kv)``; ``x = x + FFN(LN(x))``, with Q from the satellite tokens
(B, N, D) and K/V from the meteorology tokens: either shared by all tokens, (B, T, D) (the
seed's tile-mean series), or each token's own, (B, N, T, D) (the meteorology where the token
is, ``auxiliary_encoder.LocalMeteorology``). Optional per-head query/key LayerNorm bounds the
logits and guards against collapse to a one-hot or uniform attention.

With a shared context two paths give the same output: the fast path calls
``scaled_dot_product_attention`` and returns no weights; the explicit path computes
``softmax(QK^T / sqrt(d))`` and returns the weights (B, heads, N, T), each row summing to 1 over
T. A per-token context always takes the explicit path (T = 24 keys per token), computed in the
context's layout with the value projection applied after the weighted mean (``_per_token``).
There is no attention dropout (it would make the paths differ in training); dropout acts on the
residual branches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeedForward(nn.Module):
    """Token-wise MLP D -> 4D -> D with GELU; dropout only on the (B, N, D) output."""

    def __init__(self, embed_dim: int, dropout: float = 0.0, expansion: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, expansion * embed_dim)
        self.fc2 = nn.Linear(expansion * embed_dim, embed_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class CrossAttention(nn.Module):
    """Multi-head attention, queries (B, N, D) over keys/values (B, T, D)."""

    def __init__(self, embed_dim: int, num_heads: int, qk_norm: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.kv_proj = nn.Linear(embed_dim, 2 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.q_norm: nn.Module = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm: nn.Module = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()

    def forward(
        self, query: Tensor, context: Tensor, return_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """query (B, N, D), context (B, T, D) or (B, N, T, D) -> (out (B, N, D), weights
        (B, h, N, T) | None)."""
        batch, tokens, dim = query.shape
        h, d = self.num_heads, self.head_dim
        q = self.q_norm(self.q_proj(query).view(batch, tokens, h, d))  # (B, N, h, d)
        if context.ndim == 4:  # each token's own keys and values
            attended, per_token = self._per_token(q, context)  # (B, N, h, d), (B, h, N, T)
            out = self.out_proj(attended.reshape(batch, tokens, dim))
            return out, per_token if return_weights else None
        q = q.transpose(1, 2)  # (B, N, h, d) -> (B, h, N, d)
        steps = context.shape[1]
        # (B, T, 2D) -> (B, T, 2, h, d) -> (2, B, h, T, d)
        kv = self.kv_proj(context).view(batch, steps, 2, h, d).permute(2, 0, 3, 1, 4)
        k, v = self.k_norm(kv[0]), kv[1]
        weights = None
        if return_weights:
            scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(d))  # (B, h, N, T)
            weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            attended = torch.matmul(weights, v)  # (B, h, N, d)
        else:
            attended = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
        # (B, h, N, d) -> (B, N, h, d) -> (B, N, D)
        merged = attended.transpose(1, 2).reshape(batch, tokens, dim)
        return self.out_proj(merged), weights

    def _per_token(self, q: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """q (B, N, h, d), context (B, N, T, D) -> (attended (B, N, h, d), weights (B, h, N, T)).

        The same attention as materialising keys and values, computed in the context's own
        layout: no (B, h, N, T, d) permutation of the largest tensors of the model (a copy and,
        in backward, a zero-filled gradient each). The values are never built: the weights sum
        to 1 over T, so sum_t p_t (W_v c_t + b_v) = W_v (sum_t p_t c_t) + b_v per head.
        """
        batch, tokens, steps, dim = context.shape
        h, d = self.num_heads, self.head_dim
        key_weight, value_weight = self.kv_proj.weight.split(dim)  # (D, D) each: keys first
        key_bias, value_bias = self.kv_proj.bias.split(dim)
        # (B, N, T, D) -> (B, N, T, h, d): every token's key of every hour, normalized per head
        k = self.k_norm(F.linear(context, key_weight, key_bias).view(batch, tokens, steps, h, d))
        scores = (k * q[:, :, None]).sum(dim=-1) * (1.0 / math.sqrt(d))  # (B, N, T, h)
        per_token = torch.softmax(scores.float(), dim=2).to(q.dtype)  # (B, N, T, h)
        # (B, N, h, T) @ (B, N, T, D) -> (B, N, h, D): each head's weighted mean context
        pooled = torch.matmul(per_token.transpose(2, 3), context.to(per_token.dtype))
        value_weight = value_weight.view(h, d, dim).to(pooled.dtype)  # (h, d, D)
        attended = torch.einsum("bnhc,hdc->bnhd", pooled, value_weight) + value_bias.view(h, d)
        return attended, per_token.permute(0, 3, 1, 2)  # (B, N, h, d), (B, h, N, T)


class CrossAttentionLayer(nn.Module):
    """Pre-norm cross-attention + feed-forward block with residuals: (B, N, D) -> (B, N, D)."""

    def __init__(
        self, embed_dim: int, num_heads: int, dropout: float = 0.1, qk_norm: bool = True
    ) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(embed_dim)
        self.attention = CrossAttention(embed_dim, num_heads, qk_norm)
        self.drop = nn.Dropout(dropout)
        self.norm_ff = nn.LayerNorm(embed_dim)
        self.ff = FeedForward(embed_dim, dropout)

    def forward(
        self, x: Tensor, context: Tensor, return_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, N, D) satellite tokens, context (B, T, D) or (B, N, T, D) -> (x', weights
        (B, h, N, T) | None)."""
        attended, weights = self.attention(self.norm_q(x), context, return_weights)
        x = x + self.drop(attended)
        x = x + self.ff(self.norm_ff(x))
        return x, weights

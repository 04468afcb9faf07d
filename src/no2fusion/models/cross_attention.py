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
T. A per-token context always takes the explicit path (T = 24 keys per token: cheap). There is
no attention dropout (it would make the paths differ in training); dropout acts on the residual
branches.
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
        # (B, N, D) -> (B, N, h, d) -> (B, h, N, d)
        q = self.q_norm(self.q_proj(query).view(batch, tokens, h, d)).transpose(1, 2)
        if context.ndim == 4:  # each token's own keys and values
            steps = context.shape[2]
            # (B, N, T, 2D) -> (B, N, T, 2, h, d) -> (2, B, h, N, T, d)
            kv = self.kv_proj(context).view(batch, tokens, steps, 2, h, d)
            kv = kv.permute(3, 0, 4, 1, 2, 5)
            k, v = self.k_norm(kv[0]), kv[1]
            scores = torch.einsum("bhnd,bhntd->bhnt", q, k) * (1.0 / math.sqrt(d))
            per_token = torch.softmax(scores.float(), dim=-1).to(q.dtype)  # (B, h, N, T)
            attended = torch.einsum("bhnt,bhntd->bhnd", per_token, v)  # (B, h, N, d)
            weights: Tensor | None = per_token if return_weights else None
        else:
            steps = context.shape[1]
            # (B, T, 2D) -> (B, T, 2, h, d) -> (2, B, h, T, d)
            kv = self.kv_proj(context).view(batch, steps, 2, h, d).permute(2, 0, 3, 1, 4)
            k, v = self.k_norm(kv[0]), kv[1]
            weights = None
            if return_weights:
                scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(d))  # (B,h,N,T)
                weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
                attended = torch.matmul(weights, v)  # (B, h, N, d)
            else:
                attended = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
        # (B, h, N, d) -> (B, N, h, d) -> (B, N, D)
        merged = attended.transpose(1, 2).reshape(batch, tokens, dim)
        return self.out_proj(merged), weights


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

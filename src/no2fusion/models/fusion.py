"""The three neural models under one interface, and ``build_model`` (``model.kind``).

Sits in ``models/``; ``training/`` and ``evaluation/`` build models only through here.

* ``CrossModalNO2Predictor``: satellite tokens query meteorology tokens (the seed's model).
* ``ConcatFusion``: the mean-pooled meteorology encoding is concatenated to every satellite
  token, then the same number of token layers of the same width, with no attention.
* ``SatelliteOnly``: the same satellite path and token layers; the meteorology is ignored.

All share ``forward(sat (B, C, H, W), aux (B, T, F), return_attention=False) ->
(pred (B, H, W), attention (B, layers, heads, tokens, T) | None)``; only the cross-modal model
ever returns attention. Inputs and outputs are in normalized units (NaN already 0 in ``sat``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from no2fusion.config import ModelConfig
from no2fusion.models.auxiliary_encoder import AuxiliaryEncoder
from no2fusion.models.cross_attention import CrossAttentionLayer, FeedForward
from no2fusion.models.heads import PredictionHead
from no2fusion.models.satellite_encoder import SatelliteEncoder


class ConcatFusionLayer(nn.Module):
    """x (B, N, D), pooled meteorology g (B, D): x += W [LN(x), g]; x += FFN(LN(x))."""

    def __init__(self, embed_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.mix = nn.Linear(2 * embed_dim, embed_dim)
        self.drop = nn.Dropout(dropout)
        self.norm_ff = nn.LayerNorm(embed_dim)
        self.ff = FeedForward(embed_dim, dropout)

    def forward(self, x: Tensor, pooled: Tensor) -> Tensor:
        # (B, D) -> (B, 1, D) -> (B, N, D): the same pooled vector beside every token
        broadcast = pooled.unsqueeze(1).expand(-1, x.shape[1], -1)
        x = x + self.drop(self.mix(torch.cat([self.norm(x), broadcast], dim=-1)))
        return x + self.ff(self.norm_ff(x))


class TokenMixLayer(nn.Module):
    """Satellite-only stand-in of a fusion layer: x += MLP(LN(x)) (D -> D -> D); x += FFN."""

    def __init__(self, embed_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.mix = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim)
        )
        self.drop = nn.Dropout(dropout)
        self.norm_ff = nn.LayerNorm(embed_dim)
        self.ff = FeedForward(embed_dim, dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.mix(self.norm(x)))
        return x + self.ff(self.norm_ff(x))


class _TokenModel(nn.Module):
    """Shared satellite path: CNN tokens -> ``_fuse`` (per subclass) -> head/decoder."""

    uses_auxiliary = True

    def __init__(
        self,
        satellite_in_channels: int,
        auxiliary_feature_dim: int = 13,
        embed_dim: int = 256,
        num_attention_heads: int = 8,
        num_attention_layers: int = 2,
        *,
        cnn_channels: tuple[int, ...] = (32, 64, 128, 256),
        auxiliary_layers: int = 4,
        auxiliary_heads: int = 8,
        dropout: float = 0.1,
        head_hidden_dim: int = 128,
        token_stride: int = 4,
        qk_norm: bool = True,
        max_time_steps: int = 48,
    ) -> None:
        super().__init__()
        for name, heads in (
            ("num_attention_heads", num_attention_heads),
            ("auxiliary_heads", auxiliary_heads),
        ):
            if embed_dim % heads:
                raise ValueError(f"embed_dim {embed_dim} is not divisible by {name} {heads}")
        self.satellite_in_channels = satellite_in_channels
        self.auxiliary_feature_dim = auxiliary_feature_dim
        self.embed_dim = embed_dim
        self.num_attention_heads = num_attention_heads
        self.num_attention_layers = num_attention_layers
        self.token_stride = token_stride
        self.satellite_encoder = SatelliteEncoder(
            satellite_in_channels, embed_dim, tuple(cnn_channels), token_stride
        )
        self.auxiliary_encoder: AuxiliaryEncoder | None = None
        if self.uses_auxiliary:
            self.auxiliary_encoder = AuxiliaryEncoder(
                auxiliary_feature_dim,
                embed_dim,
                auxiliary_layers,
                auxiliary_heads,
                dropout,
                max_time_steps,
            )
        self.fusion_layers = self._build_fusion_layers(dropout, qk_norm)
        self.out_norm = nn.LayerNorm(embed_dim)
        self.head = PredictionHead(
            embed_dim,
            head_hidden_dim,
            token_stride,
            skip_channels=self.satellite_encoder.skip_channels,
        )

    def _build_fusion_layers(self, dropout: float, qk_norm: bool) -> nn.ModuleList:
        raise NotImplementedError

    def _fuse(
        self, tokens: Tensor, context: Tensor | None, return_attention: bool
    ) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def _check_inputs(self, sat: Tensor, aux: Tensor) -> None:
        if sat.ndim != 4 or sat.shape[1] != self.satellite_in_channels:
            raise ValueError(
                f"satellite input must be (B, {self.satellite_in_channels}, H, W), "
                f"got {tuple(sat.shape)}"
            )
        if (
            aux.ndim != 3
            or aux.shape[0] != sat.shape[0]
            or aux.shape[2] != self.auxiliary_feature_dim
        ):
            raise ValueError(
                f"auxiliary input must be (B={sat.shape[0]}, T, {self.auxiliary_feature_dim}), "
                f"got {tuple(aux.shape)}"
            )

    def forward(
        self, sat: Tensor, aux: Tensor, return_attention: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """sat (B, C, H, W), aux (B, T, F) -> (pred (B, H, W), attention or None).

        ``attention`` is (B, layers, heads, H/s * W/s, T), summing to 1 over T, when
        ``return_attention`` is set on the cross-modal model; None otherwise. H and W must be
        divisible by the token stride ``s`` (ValueError otherwise).
        """
        self._check_inputs(sat, aux)
        height, width = sat.shape[-2:]
        s = self.token_stride
        tokens, skip = self.satellite_encoder(sat)  # (B, N, D), (B, C_skip, H, W)
        context = self.auxiliary_encoder(aux) if self.auxiliary_encoder is not None else None
        fused, attention = self._fuse(tokens, context, return_attention)  # (B, N, D)
        pred = self.head(self.out_norm(fused), (height // s, width // s), skip)  # (B, H, W)
        return pred, attention


class CrossModalNO2Predictor(_TokenModel):
    """The seed's model: satellite tokens (Q) attend to meteorology tokens (K, V).

    Example (the seed's snippet)::

        model = CrossModalNO2Predictor(satellite_in_channels=1, auxiliary_feature_dim=13,
                                       embed_dim=256, num_attention_heads=8,
                                       num_attention_layers=2)
        predictions, attention = model(satellite_data, auxiliary_data)
    """

    def _build_fusion_layers(self, dropout: float, qk_norm: bool) -> nn.ModuleList:
        return nn.ModuleList(
            CrossAttentionLayer(self.embed_dim, self.num_attention_heads, dropout, qk_norm)
            for _ in range(self.num_attention_layers)
        )

    def _fuse(
        self, tokens: Tensor, context: Tensor | None, return_attention: bool
    ) -> tuple[Tensor, Tensor | None]:
        assert context is not None
        maps: list[Tensor] = []
        for layer in self.fusion_layers:  # over layers (2), never over tokens
            tokens, weights = layer(tokens, context, return_attention)
            if weights is not None:
                maps.append(weights)  # (B, h, N, T)
        attention = torch.stack(maps, dim=1) if return_attention else None  # (B, L, h, N, T)
        return tokens, attention


class ConcatFusion(_TokenModel):
    """Ablation: mean-pooled meteorology encoding concatenated to every token; no attention."""

    def _build_fusion_layers(self, dropout: float, qk_norm: bool) -> nn.ModuleList:
        return nn.ModuleList(
            ConcatFusionLayer(self.embed_dim, dropout) for _ in range(self.num_attention_layers)
        )

    def _fuse(
        self, tokens: Tensor, context: Tensor | None, return_attention: bool
    ) -> tuple[Tensor, Tensor | None]:
        assert context is not None
        pooled = context.mean(dim=1)  # (B, T, D) -> (B, D)
        for layer in self.fusion_layers:
            tokens = layer(tokens, pooled)
        return tokens, None


class SatelliteOnly(_TokenModel):
    """Ablation: no meteorology. ``aux`` is accepted (same interface) and ignored."""

    uses_auxiliary = False

    def _build_fusion_layers(self, dropout: float, qk_norm: bool) -> nn.ModuleList:
        return nn.ModuleList(
            TokenMixLayer(self.embed_dim, dropout) for _ in range(self.num_attention_layers)
        )

    def _fuse(
        self, tokens: Tensor, context: Tensor | None, return_attention: bool
    ) -> tuple[Tensor, Tensor | None]:
        for layer in self.fusion_layers:
            tokens = layer(tokens)
        return tokens, None


MODEL_KINDS: dict[str, type[_TokenModel]] = {
    "cross_modal": CrossModalNO2Predictor,
    "concat": ConcatFusion,
    "satellite_only": SatelliteOnly,
}


def build_model(
    config: ModelConfig, satellite_in_channels: int, auxiliary_feature_dim: int = 13
) -> nn.Module:
    """The model named by ``config.kind`` (cross_modal | concat | satellite_only)."""
    model_class = MODEL_KINDS[config.kind]
    return model_class(
        satellite_in_channels,
        auxiliary_feature_dim,
        config.embed_dim,
        config.num_attention_heads,
        config.num_attention_layers,
        cnn_channels=tuple(config.cnn_channels),
        auxiliary_layers=config.auxiliary_layers,
        auxiliary_heads=config.auxiliary_heads,
        dropout=config.dropout,
        head_hidden_dim=config.head_hidden_dim,
        token_stride=config.token_stride,
        qk_norm=config.qk_norm,
    )

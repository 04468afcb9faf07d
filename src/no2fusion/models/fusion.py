"""The three neural models under one interface, and ``build_model`` (``model.kind``).

Sits in ``models/``; ``training/`` and ``evaluation/`` build models only through here.

* ``CrossModalNO2Predictor``: satellite tokens query meteorology tokens (the seed's model). Each
  token attends over the 24 hourly meteorology tokens where it is (``LocalMeteorology``); with
  ``transport`` the attention weights over hours also weight a learned source field sampled
  along back-trajectories through the wind (``transport.Transport``), so the decoder can draw
  plumes where the wind carried them.
* ``ConcatFusion``: the same inputs and the same transport, but no attention: the token's
  mean meteorology encoding (over hours) is concatenated to it, and the transport weights every
  hour equally.
* ``SatelliteOnly``: the same satellite path and token layers; no meteorology and no transport
  (the calendar is kept: it is not meteorology).

All share ``forward(sat (B, C, H, W), aux, wind=None, met_affine=None, calendar=None,
return_attention=False) -> (pred (B, H, W), attention (B, layers, heads, tokens, T) | None)``
with ``aux`` either the met block (B, T, F, mh, mw) (with ``met_affine`` (B, 4) and, for the
transport, ``wind`` (B, T, 2, mh, mw)) or the seed's tile-mean series (B, T, F) (no local
meteorology, no transport). Empty tensors (B, 0) stand for absent inputs. Only the cross-modal
model ever returns attention. Inputs and outputs are in normalized units (NaN already 0).

All three predict the same way (``model.residual``, ``model.residual_gain``): the residual base
channel (the per-cell training climatology) plus the network's correction, with the base's local
excess (a point source, a city core) scaled by a gain the network predicts (``_with_residual``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from no2fusion.config import ModelConfig
from no2fusion.models.auxiliary_encoder import AuxiliaryEncoder, LocalMeteorology
from no2fusion.models.cross_attention import CrossAttentionLayer, FeedForward
from no2fusion.models.heads import PredictionHead
from no2fusion.models.satellite_encoder import SatelliteEncoder
from no2fusion.models.transport import Transport, back_trajectories

CALENDAR_DIM = 7


class ConcatFusionLayer(nn.Module):
    """x (B, N, D), pooled meteorology g (B, [N,] D): x += W [LN(x), g]; x += FFN(LN(x))."""

    def __init__(self, embed_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.mix = nn.Linear(2 * embed_dim, embed_dim)
        self.drop = nn.Dropout(dropout)
        self.norm_ff = nn.LayerNorm(embed_dim)
        self.ff = FeedForward(embed_dim, dropout)

    def forward(self, x: Tensor, pooled: Tensor) -> Tensor:
        """x (B, N, D); pooled (B, N, D) per token or (B, D) for all tokens."""
        # (B, D) -> (B, 1, D) -> (B, N, D): the same pooled vector beside every token
        broadcast = pooled if pooled.ndim == 3 else pooled.unsqueeze(1).expand(-1, x.shape[1], -1)
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
    """Shared path: CNN tokens -> meteorology context -> ``_fuse`` (per subclass) -> transport
    -> head/decoder."""

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
        transport: bool = True,
        decoder_channels: int = 32,
        residual_channel: int | None = None,
        residual_gain: bool = False,
    ) -> None:
        super().__init__()
        if residual_channel is not None and not 0 <= residual_channel < satellite_in_channels:
            raise ValueError(
                f"residual_channel {residual_channel} is not a channel of the "
                f"{satellite_in_channels} satellite channels"
            )
        # the output is this input channel plus the network's correction (None: no base), its
        # local excess scaled by the network's gain with ``residual_gain`` (``_with_residual``)
        self.residual_channel = residual_channel
        # (the head's gain map exists whenever the flag is set, so switching ``residual`` keeps
        # the weights' shapes; without a base it scales nothing)
        self.residual_gain = residual_gain
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
        self.local_meteorology: LocalMeteorology | None = None
        self.transport: Transport | None = None
        self.calendar_proj: nn.Linear | None = None
        if self.uses_auxiliary:
            self.auxiliary_encoder = AuxiliaryEncoder(
                auxiliary_feature_dim,
                embed_dim,
                auxiliary_layers,
                auxiliary_heads,
                dropout,
                max_time_steps,
                CALENDAR_DIM,
            )
            self.local_meteorology = LocalMeteorology(auxiliary_feature_dim, embed_dim)
            if transport:
                self.transport = Transport(
                    self.satellite_encoder.skip_channels, num_attention_heads
                )
                self.transport_gain = nn.Linear(embed_dim, num_attention_heads)
        else:
            self.calendar_proj = nn.Linear(CALENDAR_DIM, embed_dim)
        self.fusion_layers = self._build_fusion_layers(dropout, qk_norm)
        self.out_norm = nn.LayerNorm(embed_dim)
        self.head = PredictionHead(
            embed_dim,
            head_hidden_dim,
            token_stride,
            skip_channels=self.satellite_encoder.skip_channels,
            extra_channels=num_attention_heads if self.transport is not None else 0,
            decoder_channels=decoder_channels,
            outputs=2 if self.residual_gain else 1,
        )

    def _build_fusion_layers(self, dropout: float, qk_norm: bool) -> nn.ModuleList:
        raise NotImplementedError

    def _fuse(
        self, tokens: Tensor, context: Tensor | None, return_attention: bool
    ) -> tuple[Tensor, Tensor | None]:
        """(fused tokens (B, N, D), attention (B, layers, heads, N, T) or None)."""
        raise NotImplementedError

    def _hour_weights(self, attention: Tensor | None, steps: int, grid: Tensor) -> Tensor:
        """Transport weights over hours (B, heads, N, T) (override: uniform here)."""
        batch, tokens = grid.shape[:2]
        return grid.new_full((batch, self.num_attention_heads, tokens, steps), 1.0 / steps)

    def _check_inputs(self, sat: Tensor, aux: Tensor) -> None:
        if sat.ndim != 4 or sat.shape[1] != self.satellite_in_channels:
            raise ValueError(
                f"satellite input must be (B, {self.satellite_in_channels}, H, W), "
                f"got {tuple(sat.shape)}"
            )
        local = aux.ndim == 5 and aux.shape[2] == self.auxiliary_feature_dim
        series = aux.ndim == 3 and aux.shape[2] == self.auxiliary_feature_dim
        if aux.shape[0] != sat.shape[0] or not (local or series):
            raise ValueError(
                f"auxiliary input must be (B={sat.shape[0]}, T, {self.auxiliary_feature_dim}) "
                f"or (B, T, {self.auxiliary_feature_dim}, mh, mw), got {tuple(aux.shape)}"
            )

    @staticmethod
    def _present(tensor: Tensor | None) -> bool:
        return tensor is not None and tensor.numel() > 0 and tensor.ndim > 1 and tensor.shape[1] > 0

    def _token_positions(self, affine: Tensor, grid_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Met-block index positions (B, h, w) of the token centres."""
        s = self.token_stride
        h, w = grid_hw
        centre = (s - 1) / 2.0  # token centre in cells from its first cell
        rows = torch.arange(h, dtype=torch.float32, device=affine.device) * s + centre
        cols = torch.arange(w, dtype=torch.float32, device=affine.device) * s + centre
        a_i, b_i, a_j, b_j = (affine[:, k, None, None].float() for k in range(4))
        return (
            (a_i + b_i * rows[None, :, None]).expand(-1, h, w),
            (a_j + b_j * cols[None, None, :]).expand(-1, h, w),
        )

    def forward(
        self,
        sat: Tensor,
        aux: Tensor,
        wind: Tensor | None = None,
        met_affine: Tensor | None = None,
        calendar: Tensor | None = None,
        return_attention: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """sat (B, C, H, W), aux (B, T, F, mh, mw) or (B, T, F) -> (pred (B, H, W), attention
        or None); see the module docstring for the optional inputs.

        ``attention`` is (B, layers, heads, H/s * W/s, T), summing to 1 over T, when
        ``return_attention`` is set on the cross-modal model; None otherwise. H and W must be
        divisible by the token stride ``s`` (ValueError otherwise).
        """
        self._check_inputs(sat, aux)
        height, width = sat.shape[-2:]
        s = self.token_stride
        grid_hw = (height // s, width // s)
        tokens, skip = self.satellite_encoder(sat)  # (B, N, D), (B, C_skip, H, W)
        has_calendar = self._present(calendar)
        cal = calendar if has_calendar else None
        local = aux.ndim == 5 and self._present(met_affine)
        context: Tensor | None = None
        if self.auxiliary_encoder is not None:
            series = aux.mean(dim=(3, 4)) if aux.ndim == 5 else aux  # (B, T, F) tile mean
            context = self.auxiliary_encoder(series, cal)  # (B, T, D)
            if local:
                assert self.local_meteorology is not None and met_affine is not None
                rows, cols = self._token_positions(met_affine, grid_hw)
                context = self.local_meteorology(aux, rows, cols, context)  # (B, N, T, D)
        elif self.calendar_proj is not None and cal is not None:
            tokens = tokens + self.calendar_proj(cal)[:, None]
        needs_weights = return_attention or (self.transport is not None and local)
        fused, attention = self._fuse(tokens, context, needs_weights)  # (B, N, D)
        extra = None
        if self.transport is not None and local and self._present(wind):
            assert wind is not None and met_affine is not None
            steps = wind.shape[1]
            weights = self._hour_weights(attention, steps, fused)  # (B, heads, N, T)
            weights = weights.reshape(*weights.shape[:2], *grid_hw, steps).permute(0, 1, 4, 2, 3)
            gain = F.softplus(self.transport_gain(fused).float())  # (B, N, heads)
            gain = gain.transpose(1, 2).reshape(gain.shape[0], -1, *grid_hw)  # (B, heads, h, w)
            rows, cols = back_trajectories(wind, met_affine, height, width)  # (B, T, H, W)
            extra = self.transport(skip, rows, cols, weights, gain)  # (B, heads, H, W)
        head = self.head(self.out_norm(fused), grid_hw, skip, extra)  # (B, [2,] H, W)
        return self._with_residual(head, sat), attention if return_attention else None

    def _with_residual(self, head: Tensor, sat: Tensor) -> Tensor:
        """The head's output (B, H, W) (or (B, 2, H, W): correction, log-gain) -> prediction
        (B, H, W): correction + base [+ (exp(gain) - 1) * excess], base = the residual channel.

        ``excess`` is how far the base rises above its 5 x 5 neighbourhood mean (zero where it
        does not): the part of the climatology a single cell's source or a city core makes. A
        gain g scales that part by exp(g), g = 2 tanh(raw / 2) in (-2, 2), so a point source's
        column can follow the day's ventilation (about 1 / wind speed) as a product, where the
        additive correction would have to learn it cell by cell. Units: normalized NO2; the
        excess is a difference of normalized values, i.e. umol m-2 / IQR, so it needs no offset.
        """
        correction = head[:, 0] if self.residual_gain else head  # (B, H, W)
        if self.residual_channel is None:
            return correction
        base = sat[:, self.residual_channel].to(head.dtype)  # (B, H, W)
        if not self.residual_gain:
            return correction + base
        raw_gain = head[:, 1]
        # (B, H, W) -> (B, 1, H, W) -> mean over the cell's 5 x 5 neighbours inside the tile
        neighbourhood = F.avg_pool2d(base[:, None], 5, 1, 2, count_include_pad=False)[:, 0]
        excess = torch.relu(base - neighbourhood)
        gain = 2.0 * torch.tanh(0.5 * raw_gain)
        return correction + base + torch.expm1(gain) * excess


class CrossModalNO2Predictor(_TokenModel):
    """The seed's model: satellite tokens (Q) attend to meteorology tokens (K, V).

    Example (the seed's snippet, tile-mean meteorology (B, T, F))::

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

    def _hour_weights(self, attention: Tensor | None, steps: int, grid: Tensor) -> Tensor:
        """The last layer's attention over hours (B, heads, N, T)."""
        assert attention is not None
        return attention[:, -1]


class ConcatFusion(_TokenModel):
    """Ablation: each token's mean meteorology encoding (over hours) concatenated to it; no
    attention; the transport weights every hour equally."""

    def _build_fusion_layers(self, dropout: float, qk_norm: bool) -> nn.ModuleList:
        return nn.ModuleList(
            ConcatFusionLayer(self.embed_dim, dropout) for _ in range(self.num_attention_layers)
        )

    def _fuse(
        self, tokens: Tensor, context: Tensor | None, return_attention: bool
    ) -> tuple[Tensor, Tensor | None]:
        assert context is not None
        pooled = context.mean(dim=-2)  # (B, [N,] T, D) -> (B, [N,] D)
        for layer in self.fusion_layers:
            tokens = layer(tokens, pooled)
        return tokens, None


class SatelliteOnly(_TokenModel):
    """Ablation: no meteorology. ``aux`` (and the wind) are accepted (same interface) and
    ignored; the calendar is added to every token."""

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


def _residual_channel(config: ModelConfig, channel_names: tuple[str, ...] | None) -> int | None:
    """Index in ``channel_names`` of the channel ``config.residual`` names (None for "none")."""
    if config.residual == "none":
        return None
    if channel_names is None or config.residual not in channel_names:
        raise ValueError(
            f"model.residual {config.residual!r} is not a satellite channel "
            f"({', '.join(channel_names or ())})"
        )
    return channel_names.index(config.residual)


def build_model(
    config: ModelConfig,
    satellite_in_channels: int,
    auxiliary_feature_dim: int = 13,
    channel_names: tuple[str, ...] | None = None,
) -> nn.Module:
    """The model named by ``config.kind`` (cross_modal | concat | satellite_only).

    ``channel_names`` names the satellite channels; needed when ``config.residual`` names one
    (the prediction is then that channel plus the network's correction)."""
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
        transport=config.transport,
        decoder_channels=config.decoder_channels,
        residual_channel=_residual_channel(config, channel_names),
        residual_gain=config.residual_gain,
    )

"""The CIGOcc network: image -> 3D semantic occupancy (docs/architecture.md).

Stage 1 (deformable multi-level fusion): FPN image features, the segmentation branch's features
and class probabilities and the depth distribution are fused and lifted into the coarse volume
(grid / coarse_downsample); a 3D UNet turns it into the raw volume F_raw, the voxel queries Q_d
and the auxiliary SSC logits. Stage 2 (complementary-information-guided voxel generation): the
top proposed voxels cross-attend to the multi-level image features in 3D pixel space, the rest
take a learned fill; the result plus F_raw goes through 3D deformable self-attention and the
occupancy head, upsampled to the full grid.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ExperimentConfig, ssc_train_factors
from ..geometry import voxel_centers
from .backbone import ImageEncoder, conv_bn_relu
from .cross_attention import CrossAttentionStack
from .depth import DepthHead, ExternalDepthGate, external_distribution
from .head import OccupancyHead
from .layers import VoxelPositionEmbedding
from .lift import DepthLift, project_to_image
from .proposals import ring_balanced, ring_ids
from .pseudo_lidar import EvidenceLogits, PseudoLidar, StereoFreeSpace, pool_evidence
from .segmentation import SegmentationHead
from .self_attention import DeformableSelfAttention3D
from .unet3d import UNet3D


@dataclass(frozen=True)
class VolumeGeometry:
    """Sizes derived from the config: full grid, coarse volume (stage 1/2), aux output (1:2)."""

    full: tuple[int, int, int]
    coarse: tuple[int, int, int]
    aux: tuple[int, int, int]
    coarse_voxel: float

    @staticmethod
    def from_config(cfg: ExperimentConfig) -> VolumeGeometry:
        size, ds = tuple(cfg.grid.size), cfg.model.coarse_downsample
        for n in size:
            if ds < 1 or n % ds or n % 2:
                raise ValueError(f"grid.size={size} must be divisible by 2 and by model.coarse_downsample={ds}")
        return VolumeGeometry(size, tuple(n // ds for n in size), tuple(n // 2 for n in size),
                              cfg.grid.voxel_size * ds)


BLENDS = ("fixed", "learned")
PROPOSAL_SCORES = ("mass", "density", "occupancy")


FEATURE_KEYS = ("seg_feat", "seg_logits")  # with "feats_0".."feats_{L-1}": cached image features


def cached_features(batch: dict, levels: int) -> dict | None:
    """image_features' output carried in a batch (a frozen training's cache: "feats_0".. and
    "seg_feat", "seg_logits"), as floats; None when the batch has none (the image is encoded)."""
    if "feats_0" not in batch:
        return None
    out = {"feats": [batch[f"feats_{i}"].float() for i in range(levels)]}
    out.update({k: batch[k].float() for k in FEATURE_KEYS if k in batch})
    return out


# Parameter-name prefix of the stereo-evidence term (training gives it its own learning rate).
EVIDENCE_PREFIX = "evidence."

class CIGOcc(nn.Module):
    """forward(batch) with batch["img"] (B, 3, H, W) RGB in [0, 1] (or, instead, its cached
    image features: `cached_features`), "K" (B, 3, 3), "T_cam_grid" (B, 4, 4) (velodyne grid ->
    camera), optional "depth" (B, 1, H, W) metric, 0 = none, and its
    "depth_conf" (B, 1, H, W) in [0, 1] (default: 1 where there is a depth).

    Returns "ssc_logits" (B, n_cls, X, Y, Z), "aux_logits" (B, n_cls, X/2, Y/2, Z/2), and, when
    the branches exist, "seg_logits" (B, n_cls, h, w) and "depth_logits" (B, D, h, w) at the
    fusion stride, and with an external depth map its blend weight "depth_weight" (B, 1, h, w);
    "proposal" (B, X', Y', Z') is the 0/1 mask of voxels that cross-attended.
    """

    def __init__(self, cfg: ExperimentConfig):
        super().__init__()
        self.cfg = copy.deepcopy(cfg)
        m = cfg.model
        self.geom = geom = VolumeGeometry.from_config(cfg)
        E, C, S, n_cls = m.embed_dims, m.unet_channels, m.seg_channels, m.num_classes
        self.encoder = ImageEncoder(m.backbone, m.backbone_out_indices, E, m.pretrained_path)
        if m.feat_stride not in self.encoder.strides:
            raise ValueError(f"model.feat_stride={m.feat_stride} is not one of the backbone strides "
                             f"{self.encoder.strides} (model.backbone_out_indices)")
        self.fusion_level = self.encoder.strides.index(m.feat_stride)
        self.seg_head = SegmentationHead(E, S, n_cls) if m.use_segmentation else None
        seg_out = (S + n_cls) if m.use_segmentation else 0
        self.depth_head = DepthHead(E + (S if m.use_segmentation else 0), E, m.depth_bins) if m.use_depth else None
        if m.external_depth_blend not in BLENDS:
            raise ValueError(f"model.external_depth_blend must be one of {BLENDS}, got {m.external_depth_blend!r}")
        if m.proposal_score not in PROPOSAL_SCORES:
            raise ValueError(f"model.proposal_score must be one of {PROPOSAL_SCORES}, got {m.proposal_score!r}")
        self.depth_gate = (ExternalDepthGate(E, m.depth_bins, m.external_depth_weight)
                           if m.use_depth and m.external_depth_blend == "learned" else None)
        self.context = conv_bn_relu(E + seg_out, C, k=1)
        self.lift = DepthLift(geom.coarse, geom.coarse_voxel, cfg.grid.origin, m.depth_min, m.depth_max,
                              m.depth_bins, m.feat_stride)
        if any(k < 1 or m.coarse_downsample % k for k in m.head_subdivide):
            raise ValueError(f"model.head_subdivide={tuple(m.head_subdivide)} must divide "
                             f"model.coarse_downsample={m.coarse_downsample} on every axis")
        # Native grid of the head (coarse * head_subdivide): the pseudo-LiDAR volume's too.
        self.native = tuple(n * k for n, k in zip(geom.coarse, m.head_subdivide, strict=True))
        self.pseudo_lidar = (PseudoLidar(self.native, tuple(cfg.grid.voxel_size * n / k for n, k in
                                                            zip(geom.full, self.native, strict=True)),
                                         cfg.grid.origin) if m.pseudo_lidar else None)
        # With the segmentation branch each stereo point carries its cell's class probabilities.
        pl_feats = n_cls if m.use_segmentation else 0
        if m.stereo_free_space and not m.pseudo_lidar:
            raise ValueError("model.stereo_free_space needs model.pseudo_lidar (it is a channel of its evidence term)")
        self.evidence = EvidenceLogits(n_cls, pl_feats, m.stereo_free_space) if m.pseudo_lidar else None
        self.free_space = (StereoFreeSpace(self.native, self.pseudo_lidar.voxel_size.tolist(), cfg.grid.origin)
                           if m.stereo_free_space else None)
        self.unet = UNet3D(C + 1 + (2 + pl_feats if m.pseudo_lidar else 0), C, m.unet_block)
        self.aux_head = nn.Conv3d(C, n_cls, 1)
        self.query_proj = nn.Conv3d(C, C, 1)
        self.pos_embed = VoxelPositionEmbedding(geom.coarse, C)
        levels = len(self.encoder.strides)
        self.cross_attn = (CrossAttentionStack(m.cross_attn_layers, C, E, m.cross_attn_heads, levels,
                                               m.cross_attn_points, m.use_depth, m.ffn_ratio * C)
                           if m.cross_attn_layers > 0 else None)
        self.fill_embed = nn.Parameter(torch.zeros(C))
        self.self_attn = nn.ModuleList(
            DeformableSelfAttention3D(geom.coarse, C, m.self_attn_heads, m.self_attn_points, m.ffn_ratio * C)
            for _ in range(m.self_attn_layers))
        self.head = OccupancyHead(C, n_cls, geom.full, m.head_subdivide)
        centres = voxel_centers(geom.coarse, geom.coarse_voxel, cfg.grid.origin).reshape(-1, 3)
        self.register_buffer("voxel_xyz", torch.from_numpy(centres), persistent=False)
        if m.proposal_rings < 0:
            raise ValueError(f"model.proposal_rings must be >= 0, got {m.proposal_rings}")
        self.register_buffer("voxel_dist", self.voxel_xyz[:, :2].norm(dim=1), persistent=False)
        self.register_buffer("level_strides", torch.tensor(self.encoder.strides, dtype=torch.float32).unsqueeze(1),
                             persistent=False)  # (L, 1)
        # Inference cross-attends only the proposed queries, whose number is the data's (one host
        # sync per frame); an ONNX export or a CUDA-graph capture needs fixed shapes: it sets this
        # and every one of the max_queries slots is computed, the unproposed ones then discarded.
        self.static_shapes = False

    # -- stage 1 ---------------------------------------------------------------------------
    def image_features(self, img: Tensor) -> dict:
        """The 2D part that `cigocc train-seg` trains and a frozen training caches
        (training/feature_cache.py): {"feats": the encoder's L levels, and with the segmentation
        branch "seg_feat" (B, S, h, w), "seg_logits" (B, n_cls, h, w) at the fusion level}."""
        feats = self.encoder(img)
        out = {"feats": feats}
        if self.seg_head is not None:
            out["seg_feat"], out["seg_logits"] = self.seg_head(feats[self.fusion_level])
        return out

    def image_branches(self, img: Tensor | None, depth: Tensor | None, depth_conf: Tensor | None = None,
                       features: dict | None = None) -> dict:
        """Image features (computed from `img`, or given as image_features' output),
        segmentation and depth branches, and the fused lift context."""
        m = self.cfg.model
        features = features if features is not None else self.image_features(img)
        feats = features["feats"]
        f = feats[self.fusion_level]
        out: dict = {"feats": feats}
        parts, depth_in = [f], [f]
        if self.seg_head is not None:
            seg_feat, seg_logits = features["seg_feat"], features["seg_logits"]
            out["seg_logits"] = seg_logits
            parts += [seg_feat, seg_logits.softmax(1)]
            depth_in.append(seg_feat)
        if self.depth_head is not None:
            depth_logits = self.depth_head(torch.cat(depth_in, 1))
            out["depth_logits"] = depth_logits
            prob = depth_logits.float().softmax(1)
            if depth is not None:
                onehot, valid = external_distribution(depth.to(prob.dtype), depth_conf, prob.shape[-2:], m.depth_min,
                                                      m.depth_max, m.depth_bins)
            elif self.depth_gate is not None and self.training:
                # No external map in training: the gate still runs (weight 0 everywhere) so that
                # its parameters are in every graph: DDP needs each parameter used in every step
                # (mono and stereo samples mix). At inference a zero weight leaves prob as it is.
                onehot, valid = torch.zeros_like(prob), prob.new_zeros(prob.shape[0], 1, *prob.shape[-2:])
            if depth is not None or (self.depth_gate is not None and self.training):
                w = (self.depth_gate(f, prob, onehot) if self.depth_gate is not None
                     else m.external_depth_weight) * valid
                out["depth_weight"] = w
                prob = prob * (1 - w) + onehot * w
            out["depth_prob"] = prob
        out["context"] = self.context(torch.cat(parts, 1))
        return out

    def forward(self, batch: dict, inference: bool = False) -> dict[str, Tensor]:
        """`inference=True` skips what only training needs: the outputs are then just
        "ssc_logits_coarse" (B, n_cls, X' sx, Y' sy, Z' sz) at the head's native resolution
        (model.head_subdivide) (the Predictor upsamples its argmax exactly, see inference.py),
        "proposal" and, with the segmentation branch, its "seg_logits" (B, n_cls, h, w) (the
        node's ~/segmentation)."""
        K, T = batch["K"].float(), batch["T_cam_grid"].float()
        m = self.cfg.model
        B = K.shape[0]
        depth, depth_conf = batch.get("depth"), batch.get("depth_conf")
        features = cached_features(batch, len(self.encoder.strides))
        img = batch.get("img")
        image_hw = tuple(img.shape[-2:]) if img is not None else tuple(m.image_size)
        device = K.device
        br = self.image_branches(img, depth, depth_conf, features)
        feats, context = br["feats"], br["context"]
        h, w = context.shape[-2:]
        prob = br.get("depth_prob")
        lift_prob = prob if prob is not None else context.new_full((B, m.depth_bins, h, w), 1.0 / m.depth_bins)
        density = prob is not None and m.proposal_score == "density"
        vol, mass, *count = self.lift(context, lift_prob, K, T, count=density)
        unet_in = [vol / (mass + 1), torch.log1p(mass)]
        pl = pl_pooled = None
        if self.pseudo_lidar is not None:
            sem = br["seg_logits"].float().softmax(1) if "seg_logits" in br else None
            n_ch = 1 + (sem.shape[1] if sem is not None else 0)
            if depth is not None:
                pl = self.pseudo_lidar(depth, depth_conf, K, T, sem)  # (B, 1 + F, native grid)
            elif self.training:  # an empty volume: every parameter in every graph (DDP), as the gate
                pl = mass.new_zeros((B, n_ch, *self.native))
            if pl is not None:
                pl_pooled = pool_evidence(pl, tuple(m.head_subdivide))
                unet_in.append(pl_pooled)
            else:  # mono at inference: these channels are zero, and so is everything after
                unet_in.append(mass.new_zeros((B, 1 + n_ch, *mass.shape[-3:])))
        f_raw = self.unet(torch.cat(unet_in, 1).to(context.dtype))
        aux = self.aux_head(f_raw)
        out = {k: br[k] for k in (("seg_logits",) if inference else ("seg_logits", "depth_logits", "depth_weight"))
               if k in br}
        if not inference:
            out["aux_logits"] = (aux if tuple(aux.shape[-3:]) == self.geom.aux else
                                 F.interpolate(aux, size=self.geom.aux, mode="trilinear", align_corners=False))

        # -- stage 2 -------------------------------------------------------------------------
        N = f_raw[0, 0].numel()
        pos = self.pos_embed().to(f_raw.dtype)
        with torch.autocast(device.type, enabled=False):
            uv, z, visible = self.in_view(K, T, image_hw)
            if prob is None or m.proposal_score == "occupancy":  # what stage 1 finds occupied
                score = 1 - aux.float().softmax(1)[:, 0].flatten(1)
            elif density:  # mean surface probability of the frustum points in the voxel
                score = (mass / count[0].clamp_min(1)).flatten(1)
            else:
                score = mass.flatten(1)
            if pl_pooled is not None:
                # A voxel holding stereo points is proposed (VoxFormer's depth proposals): the
                # chance stage 1 misses it shrinks with its evidence n, 1 - (1 - s) / (1 + n).
                # Never saturating, so the ranking keeps stage 1's order among equal evidence
                # (exact ties would let torch's and ONNX Runtime's top-k pick differently).
                score = 1 - (1 - score) / torch.exp(pl_pooled[:, 0].float().flatten(1))  # 1 + n
            score = torch.where(visible, score, torch.zeros_like(score))
            n_q = min(m.max_queries, N)
            if m.proposal_rings > 0:  # per-distance quotas (proposals.py)
                eligible = score > m.proposal_threshold
                _, idx = ring_balanced(score, eligible, ring_ids(self.voxel_dist, m.proposal_rings), m.proposal_rings).topk(n_q, dim=1)
                proposed = eligible.gather(1, idx)
            else:
                top, idx = score.topk(n_q, dim=1)
                proposed = top > m.proposal_threshold
        n_used = int(proposed.sum(1).max()) if inference and not self.static_shapes else n_q
        vol2 = self.voxel_queries(f_raw, idx, proposed, n_used, uv, z, pos, feats, prob)
        x = vol2.transpose(1, 2).reshape_as(f_raw) + f_raw
        for layer in self.self_attn:
            x = layer(x, pos)
        native = self.head(x, upsample=False)
        if pl is not None:  # stereo evidence per native voxel (zero without a stereo map)
            free = has_stereo = None
            if self.free_space is not None:
                if depth is not None:  # a sample whose map has no valid pixel (stereo dropped) is mono
                    free, has_stereo = self.free_space(depth, K, T), (depth.flatten(1) > 0).any(1)
                else:  # training without stereo: zeros, gated off, every parameter in every graph (DDP)
                    free, has_stereo = pl.new_zeros((B, 2, *self.native)), pl.new_zeros(B, dtype=torch.bool)
            native = native + self.evidence(pl, free, has_stereo).to(native.dtype)
        if inference:
            out["ssc_logits_coarse"] = native
        else:
            # Training with loss.ssc_scale > 1 supervises at a lower resolution (CPU training).
            f = ssc_train_factors(self.cfg) if self.training else (1, 1, 1)
            out["ssc_logits"] = self.head.upsample(native, tuple(n // k for n, k in zip(self.geom.full, f, strict=True)))
        full_prop = torch.zeros(B, N, dtype=f_raw.dtype, device=f_raw.device)
        full_prop.scatter_(1, idx, proposed.to(f_raw.dtype))
        out["proposal"] = full_prop.view(B, *self.geom.coarse)
        return out

    def voxel_queries(self, f_raw: Tensor, idx: Tensor, proposed: Tensor, n_used: int, uv: Tensor, z: Tensor,
                      pos: Tensor, feats: list[Tensor], prob: Tensor | None) -> Tensor:
        """Stage 2's query volume (B, N, C): the top-k slots `idx` (B, n_q), sorted best first,
        cross-attend where `proposed` (B, n_q) and every other voxel takes the learned fill.

        Only the first `n_used` slots are computed: `proposed` is a prefix of the sorted slots
        (a score above the threshold; with proposal rings, eligible keys rank above all others),
        and a query's cross-attention reads the image features and no other query, so the slots
        after the last proposed one, which take the fill anyway, need not be computed. Inference
        passes the largest number proposed in the batch (one host sync per frame); training, an
        ONNX export and a CUDA-graph capture pass n_q (fixed work and shapes; in training DDP
        needs the attention's parameters in every step even when nothing is proposed).
        Q_d is projected (query_proj, 1x1x1) after the gather: for the selected voxels only.
        """
        B, C = f_raw.shape[:2]
        N = f_raw[0, 0].numel()
        fill = self.fill_embed.to(f_raw.dtype).view(1, 1, C)
        if self.cross_attn is None:
            return fill.expand(B, N, C).clone()
        # At least one slot, also when nothing is proposed (it then takes the fill): the volume
        # has the dtype of the attention's output (under autocast fp32 on CUDA, bf16 on the CPU),
        # as in every other frame.
        sel = idx[:, :max(n_used, 1)]
        q = torch.gather(f_raw.flatten(2).transpose(1, 2), 1, sel.unsqueeze(-1).expand(-1, -1, C))
        q = F.linear(q, self.query_proj.weight.flatten(1), self.query_proj.bias)
        with torch.autocast(f_raw.device.type, enabled=False):
            ref_uv, ref_d, to_depth, sizes = self._references(torch.gather(uv, 1, sel.unsqueeze(-1).expand(-1, -1, 2)),
                                                              torch.gather(z, 1, sel), feats)
        q = self.cross_attn(q, pos[sel], ref_uv, ref_d, feats, prob.unsqueeze(1) if prob is not None else None,
                            to_depth, sizes)
        q = torch.where(proposed[:, :sel.shape[1]].unsqueeze(-1), q, fill.to(q.dtype))
        return fill.to(q.dtype).expand(B, N, C).clone().scatter_(1, sel.unsqueeze(-1).expand(-1, -1, C), q)

    def in_view(self, K: Tensor, T: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """Coarse voxel centres -> pixel (B, N, 2), camera depth (B, N) and whether the centre
        is in the image and in front of the camera (B, N) bool; N = X'Y'Z' in flat order."""
        uv, z = project_to_image(self.voxel_xyz, K.float(), T.float())
        H, W = image_size
        visible = ((z > self.cfg.model.depth_min * 0.5) & (uv[..., 0] > -0.5) & (uv[..., 0] < W - 0.5)
                   & (uv[..., 1] > -0.5) & (uv[..., 1] < H - 0.5))
        return uv, z, visible

    def _references(self, uv: Tensor, z: Tensor, feats: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Voxel projections -> per-level normalised (x, y) (B, Nq, L, 2), normalised depth
        (B, Nq) over the bins, (L, 2) factors from each level's normalisation to the depth
        map's (a level of stride s and width w spans s*w pixels, which may exceed the image),
        and the (L, 2) level sizes (w, h)."""
        m = self.cfg.model
        # Filled on the device (kernels with scalar arguments), not copied from a Python list:
        # a host -> device copy per frame would block CUDA-graph capture.
        sizes_t = torch.stack([torch.stack([uv.new_full((), f.shape[-1]), uv.new_full((), f.shape[-2])])
                               for f in feats])  # (L, 2) (w, h)
        extent = sizes_t * self.level_strides  # (L, 2) pixels
        ref_uv = (uv.unsqueeze(2) + 0.5) / extent
        ref_d = (z - m.depth_min) / (m.depth_max - m.depth_min)
        to_depth = extent / extent[self.fusion_level]
        return ref_uv, ref_d, to_depth, sizes_t


def build_model(cfg: ExperimentConfig) -> CIGOcc:
    """The network for `cfg` (weights initialised; load a checkpoint with model.checkpoint)."""
    return CIGOcc(cfg)

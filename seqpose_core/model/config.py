"""Model section of the configuration (owned by seqpose_core.model).

The defaults are the paper's S configuration (DINOv2 ViT-S/14 + Depth-Anything-V2-S head, 600 queries, N=3
history frames, 6 decoder layers). Fields left at 0 / () take the official value for the chosen encoder size.
"""

from dataclasses import dataclass

# Run-time choices that older checkpoints stored in this section; they live in inference.refiner now
# (seqpose_core.stages.config), and a stored model section that still has them reads without them.
MOVED_TO_INFERENCE = ('refiner_classes', 'refiner_box_classes', 'refiner_depth_weight')


@dataclass
class ModelConfig:
    # --- encoder (DINOv2) -------------------------------------------------------------------------------------
    encoder: str = 'vits'  # DINOv2 size: vits / vitb / vitl, or 'custom' with the fields below
    embed_dim: int = 0  # custom only: token width
    encoder_depth: int = 0  # custom only: number of transformer blocks
    encoder_heads: int = 0  # custom only: attention heads
    patch_stem: str = 'linear'  # 'linear' (DINOv2's 14x14 projection) | 'conv' (custom only: from scratch)
    intermediate_layers: tuple[int, ...] = ()  # blocks feeding the DPT head; () = official (S/B 2,5,8,11)
    # --- geometry decoder (Depth-Anything-V2 DPT head) --------------------------------------------------------
    dpt_features: int = 0  # width of scratch/refinenets; 0 = official (S 64, B 128, L 256)
    dpt_out_channels: tuple[int, ...] = ()  # projects widths; () = official (S 48,96,192,384)
    # --- STSQ decoder ------------------------------------------------------------------------------------------
    hidden_dim: int = 256  # query / fused-feature width (z_i channels)
    decoder_heads: int = 8
    decoder_ffn_dim: int = 1024
    decoder_points: int = 4  # learned 3D sampling points per query (eq. 8)
    decoder_layers: int = 6
    dropout: float = 0.1
    num_queries: int = 600  # learnable 3D query anchors
    memory_frames: int = 3  # N: history frames in the memory queue
    memory_top_k: int = 64  # K: queries kept per frame (and propagated to the next frame, eq. 6)
    # Camera-frame boxes (x_min, y_min, z_min, x_max, y_max, z_max), metres. Reference points live in the
    # normalised position_range (sigmoid space, as DETR3D); anchors start spread over the table-top anchor_range.
    position_range: tuple[float, ...] = (-1.5, -1.5, 0.05, 1.5, 1.5, 3.0)
    anchor_range: tuple[float, ...] = (-0.4, -0.4, 0.3, 0.4, 0.4, 1.5)
    # tan of the half field of view (x, y) the anchors are spread over (viewing directions, then depth from
    # anchor_range's z bounds); () = spread over the anchor_range box instead. NOCS REAL: 320/591, 240/590.
    anchor_fov: tuple[float, ...] = (0.54, 0.41)
    # Extra queries initialised at object centres predicted densely from the fused level `proposal_level`
    # (model.proposals; not in the paper, which uses the anchors only: 0). They make a decoder trained from
    # scratch find objects in a short schedule.
    proposal_queries: int = 0
    proposal_level: int = 2  # index into the fused levels z_0..z_3 (z_2: twice the patch grid)
    # Geometry-aware cross-attention guided by the predicted depth
    # (geometry_attention.GeometryDeformableCrossAttention): the paper's section 3.3 c.
    # Off in checkpoints from before it existed; on in every shipped config.
    depth_guidance: bool = False
    sampling_radius: float = 0.05  # metres: initial spread of the 3D sampling points around a reference
    max_sampling_offset: float = 0.3  # metres: the farthest a sampling point may be from its reference
    size_prior: tuple[float, ...] = (0.15, 0.15, 0.15)  # metres: category-agnostic size the head scales
    # > 0: the rotation's azimuth about the up axis is classified into this many bins + a residual, measured
    # from the viewing ray (model.viewpoint); 0: the paper's 6D regression alone.
    azimuth_bins: int = 0
    # > 0: a pose refiner of this width (model.pose_refiner: a small CNN on a crop of the camera image around each
    # detection) that can replace a detection's rotation; the runner applies it to the classes chosen in
    # inference.refiner.classes, `seqpose train-refiner` trains it. 0: the decoder's rotation alone (the paper).
    refiner_width: int = 0
    refiner_crop_size: int = 64  # pixels of the square crop the refiner reads
    refiner_crop_margin: float = 1.3  # crop side / the box diagonal projected at the object's depth
    refiner_azimuth_bins: int = 12
    # The refiner also re-estimates each box from its crop (model.pose_refiner.decode_boxes): where the centre
    # projects, how large the object looks and its metric size, hence its depth. False: rotation only.
    refiner_box: bool = False
    # The refiner also tells what a published box holds (background or one of the six classes: a second opinion
    # from the full-resolution crop, as the second stage of a two-stage detector), and the runner fuses it into the
    # detection's score (`seqpose train-crop-scorer` trains it; model.crop_scorer).
    refiner_scoring: bool = False
    # --- weights loaded by build_model (empty: random init; checkpoints rebuild without them) -----------------
    dinov2_weights: str = ''  # dinov2_vit{s,b,l}14_pretrain.pth / .safetensors
    depth_anything_weights: str = ''  # depth_anything_v2_vit{s,b,l}.pth / .safetensors (encoder + head)

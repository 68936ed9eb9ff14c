"""SeqPose: DINOv2 encoder -> Depth-Anything-V2 DPT head -> fusion (+ dense heads) -> STSQ decoder + pose heads.

    outputs, memory = model(images (B,3,H,W), K (B,3,3), memory=None, camera_motion=None (B,4,4), dense=True)

`images` are ImageNet-normalised RGB at the network input size (multiples of 14); `K` is for that size.
Outputs (docs/architecture.md): pred_logits (B, Qt, 6), pred_translation (B, Qt, 3) metres,
pred_rotation6d (B, Qt, 6), pred_size (B, Qt, 3) metres, aux_outputs (one dict per earlier decoder layer),
with dense=True also depth (B,1,H,W) metres, normal (B,3,H,W), seg_logits (B,7,H,W) and relative_depth
(B,1,H,W, the official DPT output), and detection_probabilities (B, Qt, 6): the per-class scores under the
forward's `score_fusion`, the ones the memory ranks by. Qt = num_queries, plus memory_top_k propagated queries
(first) when the memory holds a previous frame (eq. 6).

Each stage is a method (encode, decode_geometry, fuse, predict_dense, decode_queries) so benchmarks can time
them one by one; or set `model.stage_timer = StageTimer()` to accumulate per-stage seconds during forward.
"""

import torch
from torch import nn

from seqpose_core.model.checkpoint import (
    load_checkpoint,
    load_depth_anything_weights,
    load_dinov2_weights,
    load_state_strict,
    model_config_from_checkpoint,
)
from seqpose_core.model.config import ModelConfig
from seqpose_core.model.crop_scorer import SecondStage, build_crop_scorer
from seqpose_core.model.dinov2 import PATCH_SIZE, build_encoder
from seqpose_core.model.dpt import build_dpt_head
from seqpose_core.model.fusion import DenseHeads, FeatureFusion
from seqpose_core.model.memory import MemoryQueue
from seqpose_core.model.pose_refiner import build_pose_refiner
from seqpose_core.model.proposals import centre_evidence
from seqpose_core.model.stsq import SpatialTemporalQueryDecoder
from seqpose_core.timing import timed_stage

STAGES = ('encoder', 'depth_head', 'fusion', 'dense', 'stsq', 'pose_head')
PREDICTION_KEYS = ('pred_logits', 'pred_translation', 'pred_rotation6d', 'pred_size')
SCORE_FUSIONS = ('query', 'proposal')  # how detections are scored: the query's own, or fused with the proposal head


class SeqPose(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg)  # DINOv2 (official: `pretrained.`)
        self.depth_head = build_dpt_head(cfg, self.encoder.embed_dim)  # DPT (official: `depth_head.`)
        features = self.depth_head.features
        self.fusion = FeatureFusion(features, cfg.hidden_dim)
        self.dense_heads = DenseHeads(cfg.hidden_dim, features)
        self.decoder = SpatialTemporalQueryDecoder(cfg)
        self.pose_refiner = build_pose_refiner(cfg)  # None unless model.refiner_width
        self.crop_scorer = build_crop_scorer(cfg)  # None unless model.refiner_scoring (reads the refiner's features)
        self.stage_timer = None

    @property
    def second_stage(self):
        """crops, class ids -> the refiner's outputs and the crop scorer's class logits in one CNN pass
        (model.crop_scorer.SecondStage), or None without a refiner."""
        if self.pose_refiner is None:
            return None
        return SecondStage(self.pose_refiner, self.crop_scorer)

    @property
    def has_proposals(self):
        """Whether the decoder has proposal queries, which score_fusion 'proposal' needs."""
        return self.decoder.proposals is not None

    # --- memory ---------------------------------------------------------------------------------------------
    def init_memory(self, batch_size=None):
        """An empty memory queue for a new sequence (N = memory_frames, K = memory_top_k)."""
        return MemoryQueue(self.cfg.memory_frames, self.cfg.memory_top_k, batch_size)

    # --- stages ---------------------------------------------------------------------------------------------
    def encode(self, images):
        """(B, 3, H, W) -> 4 x (B, C_enc, H/14, W/14) DINOv2 levels (after the final norm)."""
        return [patches for patches, _cls in self.encoder.get_intermediate_layers(images)]

    def decode_geometry(self, levels, image_hw=None):
        """-> semantic s_i, geometry g_i (finest first) and, given image_hw, the DPT's relative depth."""
        return self.depth_head(levels, image_hw)

    def fuse(self, semantic, geometry):
        return self.fusion(semantic, geometry)

    def predict_dense(self, fused, geometry, image_hw):
        return self.dense_heads(fused[0], geometry[0], image_hw)

    def decode_queries(self, fused, K, image_hw, memory=None, depth_map=None):
        return self.decoder(fused, K, image_hw, memory, timer=self.stage_timer, depth_map=depth_map)

    def detection_probabilities(self, outputs, K, image_hw, score_fusion='query'):
        """(B, Q, 6) per-class detection scores: the queries' own (sigmoid of pred_logits), or with
        score_fusion 'proposal' sqrt(query probability x the proposal head's evidence under the predicted centre)
        (proposals.centre_evidence). The runner publishes these and the memory keeps its top-K by the same."""
        self.check_score_fusion(score_fusion)
        probabilities = outputs['pred_logits'].detach().float().sigmoid()
        if score_fusion == 'proposal':
            probabilities = (probabilities * centre_evidence(outputs, K, image_hw)).sqrt()
        return probabilities

    def check_score_fusion(self, score_fusion):
        """Raises ValueError unless this model can score its detections with score_fusion (SCORE_FUSIONS)."""
        if score_fusion not in SCORE_FUSIONS:
            raise ValueError(f'score_fusion {score_fusion!r}: expected one of {SCORE_FUSIONS}')
        if score_fusion == 'proposal' and not self.has_proposals:
            raise ValueError(
                "score_fusion 'proposal' needs a model with proposal queries "
                '(model.proposal_queries > 0); this one has none'
            )

    # --- forward --------------------------------------------------------------------------------------------
    def forward(self, images, K, memory=None, camera_motion=None, dense=True, score_fusion='query'):
        images, K, camera_motion = self._check_inputs(images, K, camera_motion)
        batch = images.shape[0]
        image_hw = tuple(images.shape[-2:])
        timer = self.stage_timer
        if memory is not None:
            memory.check_batch(batch)
            memory = memory.to(images.device).advanced(camera_motion)
        else:
            memory = self.init_memory(batch)

        with timed_stage(timer, 'encoder'):
            levels = self.encode(images)
        with timed_stage(timer, 'depth_head'):
            semantic, geometry, relative_depth = self.decode_geometry(levels, image_hw if dense else None)
        with timed_stage(timer, 'fusion'):
            fused = self.fuse(semantic, geometry)
        dense_outputs, coarse_depth, depth_map = {}, None, None
        if dense:
            with timed_stage(timer, 'dense'):
                dense_outputs = self.predict_dense(fused, geometry, image_hw)
                dense_outputs['relative_depth'] = relative_depth
                coarse_depth = dense_outputs.pop('coarse_depth')
        if self.cfg.depth_guidance:
            with timed_stage(timer, 'dense'):
                if coarse_depth is None:
                    coarse_depth = self.dense_heads.coarse_depth(fused[0], geometry[0])
                # detached: the depth head stays a geometric estimate, trained by the depth loss alone
                depth_map = coarse_depth.detach()
        layer_outputs, queries = self.decode_queries(fused, K, image_hw, memory, depth_map)

        final = layer_outputs[-1]
        outputs = dict(final)
        outputs['aux_outputs'] = layer_outputs[:-1]
        outputs.update(dense_outputs)
        # the published scores: the memory keeps its top-K by them and the runner thresholds the same tensor
        probabilities = self.detection_probabilities(final, K, image_hw, score_fusion)  # (B, Qt, 6)
        outputs['detection_probabilities'] = probabilities
        new_memory = memory.pushed(queries, final['pred_translation'], probabilities.amax(-1))
        return outputs, new_memory

    def _check_inputs(self, images, K, camera_motion):
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f'images: expected a (B, 3, H, W) tensor, got '
                f'{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}'
            )
        if images.shape[-2] % PATCH_SIZE or images.shape[-1] % PATCH_SIZE:
            raise ValueError(f'images: size {tuple(images.shape[-2:])} is not a multiple of {PATCH_SIZE}')
        batch = images.shape[0]
        if not torch.is_tensor(K) or tuple(K.shape) != (batch, 3, 3):
            raise ValueError(f'K: expected ({batch}, 3, 3), got {tuple(K.shape) if torch.is_tensor(K) else K!r}')
        K = K.to(images)
        if camera_motion is not None:
            if not torch.is_tensor(camera_motion) or tuple(camera_motion.shape) != (batch, 4, 4):
                raise ValueError(
                    f'camera_motion: expected ({batch}, 4, 4) T_cur_from_prev, got '
                    f'{tuple(getattr(camera_motion, "shape", ()))}'
                )
            camera_motion = camera_motion.to(images)
        return images, K, camera_motion


def build_model(model_cfg: ModelConfig = None, load_pretrained=True) -> SeqPose:
    """SeqPose from a ModelConfig (or a full SeqPoseConfig). With load_pretrained, the weight files named in
    the config (dinov2_weights, depth_anything_weights) are loaded strictly."""
    if model_cfg is None:
        model_cfg = ModelConfig()
    model_cfg = getattr(model_cfg, 'model', model_cfg)  # accept SeqPoseConfig too
    model = SeqPose(model_cfg)
    if load_pretrained:
        if model_cfg.dinov2_weights:
            load_dinov2_weights(model, model_cfg.dinov2_weights)
        if model_cfg.depth_anything_weights:
            load_depth_anything_weights(model, model_cfg.depth_anything_weights)
    return model


def model_from_checkpoint(content, path='checkpoint') -> SeqPose:
    """The model of a checkpoint dict (`model.checkpoint.load_checkpoint`), weights loaded strictly.
    Pretrained-weight paths in the stored config are not reloaded: the checkpoint holds the trained weights."""
    model = SeqPose(model_config_from_checkpoint(content, path))
    load_state_strict(model, content['model'], path, 'model built from its stored config')
    return model


def load_model_from_checkpoint(path, device='cpu') -> SeqPose:
    return model_from_checkpoint(load_checkpoint(path), path).to(device)

"""The training losses of eq. (10), DETR style: `SetCriterion` matches queries to objects (Hungarian), computes
each term with the method `loss_map` names (one signature for all: outputs, targets, matches) and weighs them
with `weight_dict`, built once in the constructor with every key a run can produce.

Query terms (on the final decoder layer; with `aux_loss` on every earlier layer, re-matched per layer as DETR
does, suffixed `_aux{i}`; with `one_to_many` > 1 once more on every layer against repeated objects, `_o2m{i}`):
  loss_class        sigmoid focal loss over all queries x 6 classes, normalised by the number of GT objects
  loss_translation  L1 of matched translations (metres), per GT object
  loss_rotation     L1 of matched 6D rotations, per GT object; symmetric objects are compared with the
                    closest GT rotation about their y axis (`targets.closest_symmetric_rotation6d`)
  loss_size         L1 of matched metric sizes (metres), per GT object
  loss_azimuth      (models with model.azimuth_bins > 0) cross-entropy of the azimuth bin + L1 of the residual
                    in half-bin units, matched asymmetric objects only, per GT object; loss_rotation then
                    compares only the y (up) columns, the x column being the azimuth's (model.viewpoint)
Dense terms (final outputs only):
  loss_depth        smooth L1 on pixels with valid GT depth (> 0)
  loss_normal       smooth L1 on pixels with a valid GT normal (non-zero)
  loss_segmentation cross-entropy over 7 classes (background + 6), 255 ignored; background pixels weigh
                    segmentation_background_weight (objects cover a few per cent of a table-top image)
Proposal terms (models with proposal_queries > 0; model.proposals), per cell of the proposal level:
  loss_proposal_class   sigmoid focal loss over cells x 6 classes, normalised by the number of object cells
  loss_proposal_centre  L1 of (du, dv) in cells and of log depth on object cells, per object cell

To add a term: a `loss_<name>(outputs, targets, matches)` method, its entry in `loss_map` and in one of the
term tuples below, and its `weight_<name>` in `train.config.TrainConfig` (read in `base_weights`).
"""

from dataclasses import dataclass, field, replace
from typing import Optional

import torch
import torch.nn.functional as F
from torch import distributed as dist
from torch import nn

from seqpose_core.geometry import scale_intrinsics
from seqpose_core.model.viewpoint import azimuth_bin_terms, azimuth_of
from seqpose_core.train.matcher import HungarianMatcher
from seqpose_core.train.targets import closest_symmetric_rotation6d, proposal_targets, resize_labels_nearest

IGNORE_LABEL = 255
QUERY_TERMS = ('class', 'translation', 'rotation', 'size')
AZIMUTH_TERM = 'azimuth'  # a query term of models with azimuth bins
DENSE_TERMS = ('depth', 'normal', 'segmentation')
PROPOSAL_TERMS = ('proposal_class', 'proposal_centre')
# dense term -> (model output key, frame batch key): a term is computed when both are present
DENSE_KEYS = {'depth': ('depth', 'depth'), 'normal': ('normal', 'normal'), 'segmentation': ('seg_logits', 'semantic')}


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    """Element-wise focal loss (Lin et al. 2017) of sigmoid `logits` against 0/1 `targets`, same shape."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def repeat_targets(frame_targets, times):
    """A frame's target dict with every object listed `times` times (one-to-many matching)."""
    return {
        key: value.repeat(times, *([1] * (value.dim() - 1))) if torch.is_tensor(value) and value.dim() else value
        for key, value in frame_targets.items()
    }


def _zero_like_graph(tensor):
    """A 0 that is still connected to `tensor`'s graph (DDP wants every output used)."""
    return tensor.sum() * 0.0


@dataclass
class LossTargets:
    """What the terms of one frame batch compare against."""

    objects: list  # B per-frame dicts (targets.frame_targets)
    num_objects: torch.Tensor  # normaliser of the query terms: GT objects in the batch, >= 1
    batch: Optional[dict] = None  # the collated frame batch (depth, normal, semantic, instance_index, ...)
    # proposal-level cell targets, class (B, h*w) and centre (B, h*w, 3): computed once for both proposal terms
    cells: Optional[tuple] = field(default=None, repr=False)


def base_weights(train_cfg):
    """The lambdas of eq. (10) (+ the dense and proposal terms) by loss name."""
    return {
        'loss_class': train_cfg.weight_class,
        'loss_translation': train_cfg.weight_translation,
        'loss_rotation': train_cfg.weight_rotation,
        'loss_size': train_cfg.weight_size,
        'loss_depth': train_cfg.weight_depth,
        'loss_normal': train_cfg.weight_normal,
        'loss_segmentation': train_cfg.weight_segmentation,
        'loss_proposal_class': train_cfg.weight_proposal_class,
        'loss_proposal_centre': train_cfg.weight_proposal_centre,
        'loss_azimuth': train_cfg.weight_azimuth,
    }


class SetCriterion(nn.Module):
    def __init__(self, matcher, train_cfg, num_decoder_layers, azimuth_bins=0):
        super().__init__()
        self.query_terms = QUERY_TERMS + ((AZIMUTH_TERM,) if azimuth_bins else ())
        self.matcher = matcher
        self.focal_alpha = train_cfg.focal_alpha
        self.focal_gamma = train_cfg.focal_gamma
        self.aux_loss = train_cfg.aux_loss
        self.one_to_many = train_cfg.one_to_many
        self.smooth_l1_beta = train_cfg.dense_smooth_l1_beta
        self.segmentation_background_weight = train_cfg.segmentation_background_weight
        if self.segmentation_background_weight <= 0:
            raise ValueError(f'segmentation_background_weight must be > 0, got {self.segmentation_background_weight}')
        self.loss_map = {
            'class': self.loss_class,
            'translation': self.loss_translation,
            'rotation': self.loss_rotation,
            'size': self.loss_size,
            'azimuth': self.loss_azimuth,
            'depth': self.loss_depth,
            'normal': self.loss_normal,
            'segmentation': self.loss_segmentation,
            'proposal_class': self.loss_proposal_class,
            'proposal_centre': self.loss_proposal_centre,
        }
        base = base_weights(train_cfg)
        if any(weight < 0 for weight in base.values()):
            raise ValueError(f'loss weights must be >= 0, got {base}')
        # Every name forward() can return, with its weight: the earlier decoder layers' copies of the query
        # terms (DETR's aux_weight_dict) and the one-to-many copies on every layer.
        if not azimuth_bins:
            del base[f'loss_{AZIMUTH_TERM}']
        query = {f'loss_{term}': base[f'loss_{term}'] for term in self.query_terms}
        self.weight_dict = dict(base)
        if self.aux_loss:
            for layer in range(num_decoder_layers - 1):
                self.weight_dict.update({f'{name}_aux{layer}': weight for name, weight in query.items()})
        if self.one_to_many > 1:
            for layer in range(num_decoder_layers if self.aux_loss else 1):
                self.weight_dict.update(
                    {f'{name}_o2m{layer}': weight * train_cfg.weight_one_to_many for name, weight in query.items()}
                )

    # --- query terms: the matched predictions of one decoder layer -----------------------------------------

    def loss_class(self, outputs, targets, matches):
        logits = outputs['pred_logits'].float()
        one_hot = torch.zeros_like(logits)
        for frame, (query_indices, target_indices) in enumerate(matches):
            one_hot[frame, query_indices.to(logits.device), targets.objects[frame]['labels'][target_indices]] = 1.0
        loss = sigmoid_focal_loss(logits, one_hot, self.focal_alpha, self.focal_gamma)
        return loss.sum() / targets.num_objects

    @staticmethod
    def _matched(outputs, key, targets, matches, target_key):
        """Matched predictions and targets concatenated over the batch: (M, D) each."""
        preds, goals = [], []
        for frame, (query_indices, target_indices) in enumerate(matches):
            preds.append(outputs[key][frame, query_indices.to(outputs[key].device)].float())
            goals.append(targets.objects[frame][target_key][target_indices].float())
        return torch.cat(preds), torch.cat(goals)

    @staticmethod
    def _matched_targets(targets, matches, target_key):
        """A target field of the matched objects concatenated over the batch, in `_matched`'s order."""
        return torch.cat(
            [targets.objects[frame][target_key][target_indices] for frame, (_, target_indices) in enumerate(matches)]
        )

    def loss_translation(self, outputs, targets, matches):
        pred, goal = self._matched(outputs, 'pred_translation', targets, matches, 'translation')
        return F.l1_loss(pred, goal, reduction='sum') / targets.num_objects

    def loss_rotation(self, outputs, targets, matches):
        pred, goal = self._matched(outputs, 'pred_rotation6d', targets, matches, 'rotation6d')
        if 'pred_azimuth_logits' in outputs:
            # the x column is the azimuth classifier's (loss_azimuth): only the up axis is regressed
            return F.l1_loss(pred[:, 3:6], goal[:, 3:6], reduction='sum') / targets.num_objects
        goal = closest_symmetric_rotation6d(pred, goal, self._matched_targets(targets, matches, 'symmetric'))
        return F.l1_loss(pred, goal, reduction='sum') / targets.num_objects

    def loss_size(self, outputs, targets, matches):
        pred, goal = self._matched(outputs, 'pred_size', targets, matches, 'size')
        return F.l1_loss(pred, goal, reduction='sum') / targets.num_objects

    def loss_azimuth(self, outputs, targets, matches):
        logits, rotation6d = self._matched(outputs, 'pred_azimuth_logits', targets, matches, 'rotation6d')
        residual, translation = self._matched(outputs, 'pred_azimuth_residual', targets, matches, 'translation')
        asymmetric = ~self._matched_targets(targets, matches, 'symmetric').to(logits.device)
        if not asymmetric.any():
            return _zero_like_graph(logits) + _zero_like_graph(residual)
        # the label is the ground truth's own azimuth (its up axis, its ray): fixed, whatever the prediction
        azimuth = azimuth_of(rotation6d[asymmetric, 0:3], rotation6d[asymmetric, 3:6], translation[asymmetric])
        classification, offset = azimuth_bin_terms(logits[asymmetric], residual[asymmetric], azimuth)
        return (classification + offset) / targets.num_objects

    # --- dense terms: per pixel against the frame batch's maps (matches unused) ------------------------------

    def loss_depth(self, outputs, targets, matches=None):
        pred = outputs['depth'].float()
        goal = resize_labels_nearest(targets.batch['depth'].to(pred.device).float(), pred.shape[-2:])
        valid = goal > 0
        if not valid.any():
            return _zero_like_graph(pred)
        return F.smooth_l1_loss(pred[valid], goal[valid], beta=self.smooth_l1_beta)

    def loss_normal(self, outputs, targets, matches=None):
        pred = outputs['normal'].float()
        goal = resize_labels_nearest(targets.batch['normal'].to(pred.device).float(), pred.shape[-2:])
        valid = (goal.abs().sum(1, keepdim=True) > 0).expand_as(goal)
        if not valid.any():
            return _zero_like_graph(pred)
        return F.smooth_l1_loss(pred[valid], goal[valid], beta=self.smooth_l1_beta)

    def loss_segmentation(self, outputs, targets, matches=None):
        logits = outputs['seg_logits'].float()
        goal = resize_labels_nearest(targets.batch['semantic'].to(logits.device).long(), logits.shape[-2:])
        if not (goal != IGNORE_LABEL).any():
            return _zero_like_graph(logits)
        class_weights = None
        if self.segmentation_background_weight != 1.0:
            class_weights = torch.ones(logits.shape[1], device=logits.device)
            class_weights[0] = self.segmentation_background_weight
        return F.cross_entropy(logits, goal, weight=class_weights, ignore_index=IGNORE_LABEL)

    # --- proposal terms: per cell against `targets.cells` (matches unused) -----------------------------------

    @staticmethod
    def proposal_cells(outputs, targets):
        """Stacked per-cell class (B, h*w) and centre (B, h*w, 3) targets at the proposal level."""
        logits = outputs['proposal_logits']
        level_hw = outputs['proposal_level_hw']
        batch = targets.batch
        image_hw = tuple(batch['image'].shape[-2:])
        K_level = scale_intrinsics(batch['K'].to(logits.device).float(), image_hw, level_hw)
        classes, centres = zip(
            *(
                proposal_targets(
                    batch['instance_index'][frame].to(logits.device),
                    frame_targets['labels'],
                    frame_targets['translation'].float(),
                    K_level[frame],
                    level_hw,
                )
                for frame, frame_targets in enumerate(targets.objects)
            )
        )
        return torch.stack(classes), torch.stack(centres)

    def loss_proposal_class(self, outputs, targets, matches=None):
        cell_class, _ = targets.cells
        logits = outputs['proposal_logits'].float()  # (B, h*w, 6)
        foreground = cell_class >= 0
        one_hot = torch.zeros_like(logits)
        one_hot[foreground] = F.one_hot(cell_class[foreground], logits.shape[-1]).to(logits.dtype)
        loss = sigmoid_focal_loss(logits, one_hot, self.focal_alpha, self.focal_gamma)
        return loss.sum() / foreground.sum().clamp_min(1)

    def loss_proposal_centre(self, outputs, targets, matches=None):
        cell_class, cell_centre = targets.cells
        foreground = cell_class >= 0
        if not foreground.any():
            return _zero_like_graph(outputs['proposal_centre'])
        pred = outputs['proposal_centre'].float()[foreground]  # (m, 3)
        return F.l1_loss(pred, cell_centre[foreground], reduction='sum') / foreground.sum()

    # --- the whole set -----------------------------------------------------------------------------------------

    @staticmethod
    def num_objects(objects, device):
        """GT objects in the batch (summed over DDP processes, at least 1), the normaliser of the query terms."""
        count = torch.tensor(float(sum(len(t['labels']) for t in objects)), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
            count = count / dist.get_world_size()
        return count.clamp_min(1.0)

    def layer_losses(self, outputs, targets, suffix=''):
        """The query terms of one decoder layer's outputs, matched afresh."""
        matches = self.matcher(outputs, targets.objects)
        return {f'loss_{term}{suffix}': self.loss_map[term](outputs, targets, matches) for term in self.query_terms}

    def forward(self, outputs, objects, batch=None):
        """outputs: the model's dict; objects: per-frame target dicts (`targets.batch_targets`); batch: the
        collated frame batch with `depth`, `normal`, `semantic` (None: no dense terms). Returns unweighted
        terms, every name a key of `weight_dict`."""
        targets = LossTargets(objects, self.num_objects(objects, outputs['pred_logits'].device), batch)
        layers = [outputs] + list(outputs.get('aux_outputs') or [])
        losses = self.layer_losses(outputs, targets)
        if self.aux_loss:
            for layer, aux_outputs in enumerate(layers[1:]):
                losses.update(self.layer_losses(aux_outputs, targets, suffix=f'_aux{layer}'))
        if self.one_to_many > 1:
            repeated = replace(
                targets,
                objects=[repeat_targets(frame, self.one_to_many) for frame in objects],
                num_objects=targets.num_objects * self.one_to_many,
            )
            for layer, layer_outputs in enumerate(layers if self.aux_loss else layers[:1]):
                losses.update(self.layer_losses(layer_outputs, repeated, suffix=f'_o2m{layer}'))
        if batch is None:
            return losses
        if outputs.get('proposal_logits') is not None:
            if batch.get('instance_index') is None:
                raise KeyError(
                    'the model predicts proposals (proposal_queries > 0) but the batch has no '
                    '`instance_index` map to supervise them'
                )
            targets.cells = self.proposal_cells(outputs, targets)
            losses.update({f'loss_{term}': self.loss_map[term](outputs, targets, None) for term in PROPOSAL_TERMS})
        for term, (output_key, batch_key) in DENSE_KEYS.items():
            if outputs.get(output_key) is not None and batch.get(batch_key) is not None:
                losses[f'loss_{term}'] = self.loss_map[term](outputs, targets, None)
        return losses

    def weighted_total(self, losses):
        return sum(self.weight_dict[name] * value for name, value in losses.items())


def build_criterion(cfg):
    """SetCriterion of a SeqPoseConfig: the matcher and weights of cfg.train, aux keys for cfg.model's layers."""
    return SetCriterion(
        HungarianMatcher.from_config(cfg.train), cfg.train, cfg.model.decoder_layers, cfg.model.azimuth_bins
    )

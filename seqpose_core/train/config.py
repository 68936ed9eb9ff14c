"""Training section of the configuration (owned by seqpose_core.train).

Defaults follow the paper (sec. 4.2): AdamW, lr 4e-4 with cosine annealing, 24 epochs, batch 16, all loss
weights 1 except lambda_rot = 10 (eq. 10). Matching costs and the focal-loss parameters follow DETR3D.
"""

from dataclasses import dataclass


@dataclass
class TrainConfig:
    # --- schedule -----------------------------------------------------------------------------------
    epochs: int = 24
    batch_size: int = 16  # per process (per GPU under torchrun)
    max_steps: int = 0  # >0: the schedule length in optimiser steps (overrides epochs)
    lr: float = 4e-4
    backbone_lr_mult: float = 0.1  # the (pre-trained) image encoder learns this much slower
    sampling_lr_mult: float = 0.1  # 3D sampling offsets and anchor positions (Deformable DETR: 0.1)
    weight_decay: float = 0.01
    warmup_steps: int = 500  # linear warm-up from warmup_start_factor * lr
    warmup_start_factor: float = 0.001
    min_lr_ratio: float = 0.001  # cosine decay ends at lr * min_lr_ratio
    grad_clip_norm: float = 35.0  # 0 disables clipping (DETR3D: 35)
    amp: str = 'bf16'  # 'bf16' | 'fp16' | 'none'; autocast is used on CUDA only
    seed: int = 0

    # --- data ---------------------------------------------------------------------------------------
    mode: str = 'video'  # 'video' (clips, memory carried) | 'single' (frames) | 'mixed'
    single_frame_ratio: float = 0.5  # 'mixed': fraction of steps that are single-frame batches
    video_split: str = 'real_train'  # dataset split of the clips (data readers' split names)
    single_split: str = 'camera_train'  # dataset split of the single-frame batches
    # Streaming video training (StreamPETR): a video step is one frame of each of B sequences of `stream_length`
    # consecutive frames, the memory carried (detached) from step to step as at inference, instead of a clip
    # whose memory starts empty. Scenes are cut into sequences of that length (a shorter remainder is left
    # out), and all B slots start their next sequence at the same step: the memory resets for the whole batch.
    streaming: bool = False
    stream_length: int = 24
    # Fraction of the video sequences (clips or streamed sequences) trained with their camera motion withheld,
    # so that one checkpoint works with odometry and without (train.camera_motion).
    camera_motion_dropout: float = 0.0
    # Warm start: the model weights of one of our checkpoints (model.pt of an earlier run) before step 0; the
    # optimiser and the lr schedule start afresh (a warm restart). '' = the model's own initialisation. The model
    # may have grown a part since (e.g. model.depth_guidance switched on): its new tensors keep their initialisation.
    init_weights: str = ''
    # Parts of the model (its top-level modules: encoder, depth_head, fusion, dense_heads, decoder, pose_refiner)
    # that keep their weights and stay in eval mode (train/frozen.py), e.g. to fine-tune the decoder alone on a
    # warm start. () = everything trains.
    frozen_modules: tuple[str, ...] = ()
    # Exponential moving average of the weights (train/weight_average.py): validation and model.pt use the
    # average, checkpoint.pt holds it beside the weights, model_last.pt keeps the last weights themselves.
    # 0 = off; 0.999 averages over roughly the last thousand steps.
    ema_decay: float = 0.0
    num_workers: int = 0  # DataLoader workers (0: load in the training process)
    num_threads: int = 0  # torch intra-op threads of the training process (0: torch's default).
    # On a shared CPU, 1 avoids OpenMP threads spinning on each other.

    # --- losses (eq. 10) ----------------------------------------------------------------------------
    weight_class: float = 1.0  # lambda_1, focal loss
    weight_translation: float = 1.0  # lambda_2, L1 on the translation (metres)
    weight_rotation: float = 10.0  # lambda_3, L1 on the 6D rotation
    weight_size: float = 1.0  # lambda_4, L1 on the metric size (metres)
    weight_azimuth: float = 1.0  # azimuth bins (model.azimuth_bins > 0): cross-entropy + residual L1
    weight_depth: float = 1.0  # lambda_5, smooth L1 on valid depth pixels (metres)
    weight_normal: float = 1.0  # lambda_6, smooth L1 on valid normal pixels
    weight_segmentation: float = 1.0  # lambda_7, cross-entropy (255 = ignore)
    segmentation_background_weight: float = 1.0  # < 1: background pixels count less in the cross-entropy
    weight_proposal_class: float = 1.0  # object-centre proposals (model.proposal_queries > 0): focal loss
    weight_proposal_centre: float = 1.0  # ... and L1 of the centre offset (cells) and log depth
    aux_loss: bool = True  # the query losses on every earlier decoder layer as well
    # Extra one-to-many matching (H-DETR style): the query terms once more, each GT object repeated this many
    # times in the Hungarian matching, so the few queries around an object all learn it (suffix `_o2m`).
    # 0 = off (the paper's one-to-one set loss only). Several positives per object make a query decoder
    # trained from scratch converge in far fewer steps; the runner's class-wise duplicate suppression
    # (inference.suppression.distance) removes the duplicates it then predicts.
    one_to_many: int = 0
    weight_one_to_many: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    dense_smooth_l1_beta: float = 0.1  # smooth-L1 transition point of the depth / normal losses

    # --- Hungarian matching costs ---------------------------------------------------------------------
    match_cost_class: float = 2.0
    match_cost_translation: float = 5.0  # 'metric': per metre (10 cm costs 0.5); 'ray': per unit of the
    # viewing-direction (x/z, y/z) + log-depth distance
    # Where the translation cost is measured. 'ray' matches an object to the queries that look at it (the same
    # viewing direction, then the nearest depth): a query's sampling points only see what lies along its
    # ray, so matching by metric distance would make positives of queries that do not see their object
    # (the nearest anchor in metres is often off to the side of the ray under perspective), and the class
    # head cannot learn from image evidence. The loss itself stays the metric L1 of eq. (10).
    match_translation_space: str = 'ray'
    match_cost_rotation: float = 1.0
    match_cost_size: float = 2.0

    # --- bookkeeping ----------------------------------------------------------------------------------
    checkpoint_every: int = 200  # optimiser steps between checkpoints (and always at the end)
    log_every: int = 10  # optimiser steps between CSV / TensorBoard rows
    val_every: int = 0  # optimiser steps between validations with the NOCS metrics (0: off)
    val_split: str = 'test'  # `seqpose eval` split used for validation
    # Validation runs as a deployed camera without odometry does (no camera motion). True gives the runner the
    # motion derived from the ground-truth poses of the frames being scored: an ORACLE, never a headline number.
    val_oracle_camera_motion: bool = False
    val_max_scenes: int = 0  # >0: validate on the first N scenes only

"""Training the refiner's crop scorer (model.refiner_scoring) on the detections the model itself publishes.

A set predictor trained on a CPU ranks its detections poorly: on the selection set seed 779 the decoder's score
separates the detections that are right (their class, an object within 10 cm) from the rest with a ranking AUC of
0.78. The crop around a published box, at the camera's full resolution, says more. The scorer is a small head on
the refiner's pooled crop features, which stay frozen (the pose the refiner learned stays as it was): background,
or one of the classes. Its data are the runner's own published detections on training video, each labelled with
the class of the ground-truth object whose centre lies within `match_distance` of the detection's, else
background, so it learns the mistakes this model makes (duplicates of one object are labelled alike: suppression
handles them).

    data = collect_detection_features(runner, root, 'real_train', settings)   # features, labels, classes, scores
    history = train_scorer(model.crop_scorer, data, settings, val_data=..., log_path=...)

Running the model is what costs (minutes per hundred scenes on a CPU; the head trains in seconds), so the
collected detections can be kept (`save_detections`) and trained on again (`load_detections`, `first_scenes`):
a learning curve over the number of scenes, or another head, without running the model again. The file names the
refiner whose frozen features it holds, and a refiner with other features refuses it.
"""

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seqpose_core.data.layout import enumerate_scenes
from seqpose_core.data.reader import NocsFrameReader
from seqpose_core.eval.run import run_scenes
from seqpose_core.model.pose_refiner import object_crops
from seqpose_core.train.errors import TrainingError
from seqpose_core.train.logs import write_rows

# what collect_detection_features gives, per detection, and a kept detections file holds
DETECTION_KEYS = ('features', 'labels', 'classes', 'scores', 'scene_index')


@dataclass(frozen=True)
class ScorerSettings:
    epochs: int = 8
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    match_distance: float = 0.1  # metres between a detection's centre and a ground-truth centre for its label
    max_scenes: int = 0  # 0: every scene of the split
    seed: int = 0


def collect_detection_features(runner, root, split, settings, progress=True):
    """Run `runner` (video mode: a scene is one video) over `split` under `root`: {'features' (n, F) of the crops
    around the published boxes, 'labels' (n,) 0 = background or the class id of the ground-truth object within
    match_distance, 'classes' (n,) the detections' class ids, 'scores' (n,) their scores}."""
    refiner = getattr(runner.model, 'pose_refiner', None)
    if refiner is None:
        raise TrainingError(
            'the model has no pose refiner (model.refiner_width 0): train one first (seqpose train-refiner)'
        )
    scenes = list(enumerate_scenes(root, split))
    if settings.max_scenes > 0:
        scenes = scenes[: settings.max_scenes]
    if not scenes:
        raise TrainingError(f'{root} ({split}): no scenes to run the model on')
    reader = NocsFrameReader(root, split)
    model_cfg = runner.model.cfg
    parts = {'features': [], 'labels': [], 'classes': [], 'scores': [], 'scene_index': []}
    scene_index = {name: index for index, (name, _) in enumerate(scenes)}
    if progress:
        from tqdm import tqdm

        scenes = tqdm(scenes, desc=f'detections {split}', unit='scene', mininterval=5)
    # the evaluation's loop: each scene a video from its first frame, no camera motion
    for scene_name, frame, detections in run_scenes(runner, reader, scenes):
        if not detections:
            continue
        centres = np.stack([d.translation for d in detections])  # (n, 3)
        sizes = np.stack([d.size for d in detections])
        image = torch.from_numpy(frame.color).permute(2, 0, 1).float().to(runner.device)
        with torch.no_grad():
            crops = object_crops(
                image,
                torch.as_tensor(frame.K, dtype=torch.float32, device=runner.device),
                torch.as_tensor(centres, dtype=torch.float32, device=runner.device),
                torch.as_tensor(sizes, dtype=torch.float32, device=runner.device),
                model_cfg.refiner_crop_size,
                model_cfg.refiner_crop_margin,
            )
            parts['features'].append(refiner.crop_features(crops).cpu())
        parts['labels'].append(_labels(centres, frame.annotation, settings.match_distance))
        parts['classes'].append([d.class_id for d in detections])
        parts['scores'].append([d.score for d in detections])
        parts['scene_index'].append([scene_index[scene_name]] * len(detections))
    if not parts['features']:
        raise TrainingError(f'{root} ({split}): the model published no detections to learn from')
    return {
        'features': torch.cat(parts['features']),
        'labels': torch.as_tensor(np.concatenate(parts['labels']), dtype=torch.long),
        'classes': torch.as_tensor(np.concatenate(parts['classes']), dtype=torch.long),
        'scores': torch.as_tensor(np.concatenate(parts['scores']), dtype=torch.float32),
        'scene_index': torch.as_tensor(np.concatenate(parts['scene_index']), dtype=torch.long),
    }


def feature_fingerprint(refiner):
    """sha256 (hex) of the tensors that make the refiner's crop features (stem and stages): detections collected
    with one refiner are features of that refiner only."""
    digest = hashlib.sha256()
    for name, tensor in sorted(refiner.state_dict().items()):
        if name.startswith(('stem.', 'stages.')):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_detections(path, data, refiner, source):
    """Keep collect_detection_features' data at `path` with the refiner's feature fingerprint and `source` (a
    short description: data root, split, scenes)."""
    torch.save(
        {
            'format': 'seqpose-crop-scorer-detections',
            'version': 1,
            'feature_fingerprint': feature_fingerprint(refiner),
            'source': str(source),
            **{key: data[key] for key in DETECTION_KEYS},
        },
        Path(path),
    )


def load_detections(path, refiner):
    """The data save_detections kept at `path`; TrainingError naming the file when it is not such a file or
    holds another refiner's features."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f'{path}: no such detections file')
    try:
        content = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same named refusal
        raise TrainingError(f'{path}: not a detections file ({type(error).__name__}: {error})') from error
    if not isinstance(content, dict) or content.get('format') != 'seqpose-crop-scorer-detections':
        raise TrainingError(f'{path}: not a detections file (keep one with train-crop-scorer --keep-detections)')
    missing = [key for key in DETECTION_KEYS if key not in content]
    if missing:
        raise TrainingError(f'{path}: detections file without {", ".join(missing)}')
    if content['feature_fingerprint'] != feature_fingerprint(refiner):
        raise TrainingError(
            f'{path}: holds the crop features of another refiner ({content["source"]}); '
            'collect them again with this checkpoint'
        )
    return {key: content[key] for key in DETECTION_KEYS}


def concatenate_detections(parts, scene_counts):
    """One data set of several (in order) from scene_counts[i] scenes each: the scenes of each numbered after
    those before it."""
    offsets = np.cumsum([0] + list(scene_counts[:-1]))
    return {
        key: torch.cat(
            [part[key] + int(offset) if key == 'scene_index' else part[key] for part, offset in zip(parts, offsets)]
        )
        for key in DETECTION_KEYS
    }


def first_scenes(data, count):
    """The detections of the first `count` scenes (0: all): a learning curve over the amount of video."""
    if count <= 0:
        return data
    keep = data['scene_index'] < count
    return {key: data[key][keep] for key in DETECTION_KEYS}


def _labels(centres, annotation, match_distance):
    """(n,) the class id of the ground-truth object nearest each centre when within match_distance, else 0."""
    truth = np.asarray(annotation.translations, dtype=np.float64).reshape(-1, 3)
    if not len(truth):
        return np.zeros(len(centres), dtype=np.int64)
    distances = np.linalg.norm(centres[:, None] - truth[None], axis=-1)  # (n, m)
    nearest = distances.argmin(1)
    near = distances[np.arange(len(centres)), nearest] < match_distance
    return np.where(near, np.asarray(annotation.class_ids)[nearest], 0).astype(np.int64)


def ranking_auc(scores, correct):
    """The probability that a correct detection outranks a wrong one (ties count half); nan without both."""
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    positives, negatives = int(correct.sum()), int((~correct).sum())
    if not positives or not negatives:
        return float('nan')
    order = np.argsort(scores, kind='mergesort')
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties (1-based)
    unique, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[correct].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def validate(scorer, data):
    """Accuracy of the 7-way label, and the ranking AUC of the correct detections (their class, an object within
    match_distance) by the decoder's score, by the crop's probability of the class, and by their fusion
    sqrt(score x probability), which is what the runner publishes."""
    scorer.eval()
    with torch.no_grad():
        probabilities = torch.softmax(scorer(data['features']), dim=-1)
    of_class = probabilities.gather(1, data['classes'][:, None])[:, 0]
    correct = (data['labels'] == data['classes']).numpy()
    return {
        'accuracy': float((probabilities.argmax(-1) == data['labels']).float().mean()),
        'auc_score': ranking_auc(data['scores'].numpy(), correct),
        'auc_crop': ranking_auc(of_class.numpy(), correct),
        'auc_fused': ranking_auc(torch.sqrt(data['scores'] * of_class).numpy(), correct),
    }


def train_scorer(scorer, data, settings, val_data=None, log_path=None, progress=True):
    """Train the model's crop scorer (model.crop_scorer; the refiner whose features it reads stays as it is) on
    collect_detection_features' data; one row per epoch (loss, and with val_data the figures of `validate`), also
    written to log_path as CSV."""
    if scorer is None:
        raise TrainingError('the model has no crop scorer: build it with model.refiner_scoring true')
    count = len(data['labels'])
    steps_per_epoch = count // settings.batch_size
    if steps_per_epoch < 1:
        raise TrainingError(f'{count} detections: fewer than one batch of {settings.batch_size}')
    generator = torch.Generator().manual_seed(settings.seed)
    # the dropout draws from torch's global generator: the same data and seed give the same head, whether the
    # detections were just collected or loaded from a kept file
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(scorer.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch
    )
    rows, started = [], time.perf_counter()
    for epoch in range(settings.epochs):
        scorer.train()
        order = torch.randperm(count, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            batch = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            loss = F.cross_entropy(scorer(data['features'][batch]), data['labels'][batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) / steps_per_epoch
        row = {'epoch': epoch + 1, 'minutes': (time.perf_counter() - started) / 60, 'loss': total}
        if val_data is not None:
            row.update(validate(scorer, val_data))
        rows.append(row)
        if progress:
            print(
                f'scorer epoch {epoch + 1}: '
                + '  '.join(f'{key} {value:.3f}' for key, value in row.items() if key != 'epoch'),
                flush=True,
            )
        if log_path is not None:
            write_rows(log_path, rows)
    scorer.eval()
    return rows

"""Turn a bag into the frames a replay needs: image + intrinsics + ground truth + NOCS name, in stamp order.

Two passes over the bag keep memory flat whatever the bag's length: pass 1 reads the small topics
(CameraInfo, ground truth, frame names) into stamp-indexed tables, pass 2 streams the images. Everything
that cannot be used is skipped with its reason in the `SkipLog`:

- images with an unknown encoding or that do not decode;
- images with no usable intrinsics (no CameraInfo in the bag and no --intrinsics, or a CameraInfo whose size
  differs from the image's);
- images whose header stamp repeats one already replayed (duplicates), or that arrive so late that they
  cannot be put back in stamp order (more than REORDER_WINDOW images late; less is simply reordered);
- ground truth that matches no image stamp, or whose objects cannot be read (that frame is replayed, so the
  memory stays continuous, but not scored). Frames without ground truth are replayed but not scored.
"""

import bisect
import heapq
from dataclasses import dataclass
from typing import Optional

import numpy as np

from seqpose_core.bag import messages as M
from seqpose_core.bag.io import BagError, BagReader, SkipLog

# how many images may be buffered to put out-of-order stamps back in order (one second at 30 fps)
REORDER_WINDOW = 30
IMAGE_TYPES = (M.IMAGE_TYPE, M.COMPRESSED_IMAGE_TYPE)


@dataclass
class ReplayTopics:
    image: str = None  # None: /camera/color/image_raw, else its /compressed, else the only image topic
    camera_info: str = M.CAMERA_INFO_TOPIC
    ground_truth: str = M.GT_TOPIC
    frame_name: str = M.FRAME_NAME_TOPIC
    odometry: str = M.ODOMETRY_TOPIC


@dataclass
class BagFrame:
    index: int  # replay order, 0-based, over the frames actually replayed
    stamp_ns: int  # the image's header stamp
    log_time_ns: int  # when it was recorded
    rgb: np.ndarray  # (H, W, 3) uint8
    K: np.ndarray  # (3, 3)
    scene: Optional[str]  # NOCS scene name (from /seqpose/frame_name); None: the replay names it
    frame: Optional[str]  # NOCS frame id; None: the replay numbers it within its segment
    gt: list = None  # list[BagObject] when this frame has usable ground truth, else None
    camera_frame_id: str = M.CAMERA_FRAME_ID  # the image's header.frame_id
    odom_from_camera: Optional[np.ndarray] = None  # (4, 4) the odometry reading with the image's stamp, if any

    @property
    def stamp_s(self) -> float:
        return self.stamp_ns * 1e-9


def _header_stamp_ns(msg):
    return M.stamp_to_ns(msg.header.stamp)


class BagFrames:
    """Frames of one bag. `frames()` can be iterated once; `copy_to` receives every message read in pass 2
    (all topics) so that an output bag holds the inputs next to the predictions."""

    def __init__(self, bag_path, topics: ReplayTopics = None, skipped: SkipLog = None, intrinsics=None):
        self.bag_path = bag_path
        self.topics = topics or ReplayTopics()
        self.skipped = skipped if skipped is not None else SkipLog()
        self.fallback_K = None
        if intrinsics is not None:
            fx, fy, cx, cy = (float(v) for v in intrinsics)
            self.fallback_K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
        self.reader = BagReader(bag_path, self.skipped)
        self.bag_topics = self.reader.topics()
        self._resolve_topics()
        self._index_small_topics()

    # ------------------------------------------------------------ topics
    def _available(self):
        return ', '.join(f'{t} ({i.msgtype})' for t, i in sorted(self.bag_topics.items())) or 'none'

    def _resolve_topics(self):
        topics = self.topics
        if topics.image is not None:
            info = self.bag_topics.get(topics.image)
            if info is None:
                raise BagError(
                    f'{self.bag_path}: image topic {topics.image} is not in the bag; topics: {self._available()}'
                )
        else:
            candidates = [M.IMAGE_TOPIC, M.COMPRESSED_IMAGE_TOPIC]
            found = [t for t in candidates if t in self.bag_topics]
            if not found:
                found = sorted(t for t, i in self.bag_topics.items() if i.msgtype in IMAGE_TYPES)
                if len(found) > 1:
                    raise BagError(
                        f'{self.bag_path}: no {M.IMAGE_TOPIC} and several image topics '
                        f'({", ".join(found)}); choose one with --image-topic'
                    )
                if found:
                    self.skipped.note(f'no {M.IMAGE_TOPIC} in the bag: using the only image topic {found[0]}')
            if not found:
                raise BagError(
                    f'{self.bag_path}: no image topic ({M.IMAGE_TOPIC}, sensor_msgs/Image or '
                    f'CompressedImage); topics: {self._available()}'
                )
            topics.image = found[0]
            info = self.bag_topics[topics.image]
        if info.msgtype not in IMAGE_TYPES:
            raise BagError(
                f'{self.bag_path}: topic {topics.image} has type {info.msgtype}, not {" or ".join(IMAGE_TYPES)}'
            )
        self.image_type = info.msgtype
        expected = {
            topics.camera_info: M.CAMERA_INFO_TYPE,
            topics.ground_truth: M.DETECTION_ARRAY_TYPE,
            topics.frame_name: M.HEADER_TYPE,
        }
        for topic, msgtype in expected.items():
            info = self.bag_topics.get(topic)
            if info is not None and info.msgtype != msgtype:
                raise BagError(f'{self.bag_path}: topic {topic} has type {info.msgtype}, expected {msgtype}')
        self.has_camera_info = topics.camera_info in self.bag_topics
        self.has_ground_truth = topics.ground_truth in self.bag_topics
        if not self.has_camera_info:
            if self.fallback_K is None:
                self.skipped.note(
                    f'no {topics.camera_info} topic in the bag and no --intrinsics: every image '
                    f'is skipped (pass --intrinsics FX FY CX CY or --camera-info-topic)'
                )
            else:
                self.skipped.note(f'no {topics.camera_info} topic in the bag: using --intrinsics for every image')
        if not self.has_ground_truth:
            self.skipped.note(f'no {topics.ground_truth} topic in the bag: predictions are made but nothing is scored')

    # ------------------------------------------------------------ pass 1
    def _index_small_topics(self):
        topics = self.topics
        self.camera_infos = []  # sorted [(stamp_ns, K, width, height)]
        self.ground_truth = {}  # stamp_ns -> (objects, problems)
        self.frame_names = {}  # stamp_ns -> (scene, frame)
        self.odometry = {}  # stamp_ns -> (4, 4) odom_from_camera
        small = [
            t
            for t in (topics.camera_info, topics.ground_truth, topics.frame_name, topics.odometry)
            if t in self.bag_topics
        ]
        for message in self.reader.messages(small):
            msg = message.msg
            stamp = _header_stamp_ns(msg) if message.topic != topics.frame_name else M.stamp_to_ns(msg.stamp)
            if message.topic == topics.camera_info:
                try:
                    self.camera_infos.append((stamp, M.camera_info_to_K(msg), int(msg.width), int(msg.height)))
                except ValueError as error:
                    self.skipped.add('CameraInfo message', str(error), example=f'stamp {stamp}')
            elif message.topic == topics.ground_truth:
                if stamp in self.ground_truth:
                    self.skipped.add(
                        'ground-truth message',
                        'a second message with the same header stamp (the first one is used)',
                        example=f'stamp {stamp}',
                    )
                    continue
                self.ground_truth[stamp] = M.detection_array_to_objects(msg)
            elif message.topic == topics.odometry:
                self.odometry[stamp] = M.odometry_to_pose(msg)
            else:
                scene, _, frame = msg.frame_id.rpartition('/')
                self.frame_names[stamp] = (scene or 'scene', frame)
        self.camera_infos.sort(key=lambda item: item[0])
        self._camera_info_stamps = [item[0] for item in self.camera_infos]
        if self.has_camera_info and not self.camera_infos:
            self.skipped.note(f'{topics.camera_info} has no usable message')

    def _intrinsics_for(self, stamp_ns, width, height):
        """K for an image: the CameraInfo with the same stamp, else the latest before, else the first after
        (intrinsics do not change during a recording); None and a reason when there is none usable."""
        if not self.camera_infos:
            if self.fallback_K is not None:
                return self.fallback_K, None
            return None, (f'no CameraInfo on {self.topics.camera_info} (and no --intrinsics)')
        position = bisect.bisect_right(self._camera_info_stamps, stamp_ns)
        _, K, info_width, info_height = self.camera_infos[max(position - 1, 0)]
        if (info_width, info_height) != (width, height) and info_width and info_height:
            return None, (f'CameraInfo is {info_width}x{info_height} but the image is {width}x{height}')
        return K, None

    # ------------------------------------------------------------ pass 2
    @property
    def image_count(self):
        return max(self.bag_topics[self.topics.image].count, 0)

    def frames(self, copy_to=None, progress=None):
        """Yield BagFrame in header-stamp order. `copy_to(BagMessage)` is called for every message of the bag
        (all topics, recording order) as it is read; `progress` is advanced once per image message."""
        image_topic = self.topics.image
        pending = []  # heap of (stamp_ns, sequence, BagMessage)
        pending_stamps = set()
        state = {'last_stamp': None, 'index': 0, 'max_pushed': None, 'reordered': 0, 'used_gt': set()}
        wanted = None if copy_to is not None else [image_topic]
        for sequence, message in enumerate(self.reader.messages(wanted, deserialize={image_topic})):
            if copy_to is not None:
                copy_to(message)
            if message.topic != image_topic:
                continue
            if progress is not None:
                progress.update(1)
            stamp = _header_stamp_ns(message.msg)
            if state['last_stamp'] is not None and stamp <= state['last_stamp'] or stamp in pending_stamps:
                if stamp in pending_stamps or stamp == state['last_stamp']:
                    self.skipped.add(
                        'image',
                        'duplicate header stamp (an image with this stamp was already replayed)',
                        example=f'stamp {stamp}',
                    )
                else:
                    self.skipped.add(
                        'image',
                        f'header stamp out of order by more than {REORDER_WINDOW} images '
                        '(too late to replay in stamp order)',
                        example=f'stamp {stamp}',
                    )
                continue
            if state['max_pushed'] is not None and stamp < state['max_pushed']:
                state['reordered'] += 1
            state['max_pushed'] = stamp if state['max_pushed'] is None else max(state['max_pushed'], stamp)
            heapq.heappush(pending, (stamp, sequence, message))
            pending_stamps.add(stamp)
            while len(pending) > REORDER_WINDOW:
                frame = self._emit(heapq.heappop(pending), pending_stamps, state)
                if frame is not None:
                    yield frame
        while pending:
            frame = self._emit(heapq.heappop(pending), pending_stamps, state)
            if frame is not None:
                yield frame
        if state['reordered']:
            self.skipped.note(
                f'{state["reordered"]} images were recorded out of header-stamp order; they were '
                f'replayed in stamp order'
            )
        unmatched = [s for s in self.ground_truth if s not in state['used_gt']]
        if unmatched:
            self.skipped.add(
                'ground-truth message',
                f'no replayed image on {image_topic} has its header stamp',
                count=len(unmatched),
                example=f'stamp {min(unmatched)}',
            )

    def _emit(self, item, pending_stamps, state):
        stamp, _, message = item
        pending_stamps.discard(stamp)
        state['last_stamp'] = stamp
        try:
            rgb = M.decode_image(message.msg, message.msgtype)
        except M.UnsupportedImage as error:
            self.skipped.add('image', str(error), example=f'stamp {stamp}')
            return None
        height, width = rgb.shape[:2]
        K, reason = self._intrinsics_for(stamp, width, height)
        if K is None:
            self.skipped.add('image', reason, example=f'stamp {stamp}')
            return None
        name = self.frame_names.get(stamp, (None, None))
        gt = None
        if stamp in self.ground_truth:
            state['used_gt'].add(stamp)
            objects, problems = self.ground_truth[stamp]
            if problems:
                self.skipped.add(
                    'frame scoring',
                    'ground truth has unreadable objects, the frame is replayed but not scored: ' + '; '.join(problems),
                    example=f'stamp {stamp}',
                )
            else:
                gt = objects
        elif self.has_ground_truth:
            self.skipped.add(
                'frame scoring',
                f'no ground truth on {self.topics.ground_truth} with this header '
                'stamp: replayed (memory kept) but not scored',
                example=f'stamp {stamp}',
            )
        frame = BagFrame(
            index=state['index'],
            stamp_ns=stamp,
            log_time_ns=message.log_time_ns,
            rgb=rgb,
            K=K,
            scene=name[0],
            frame=name[1],
            gt=gt,
            camera_frame_id=message.msg.header.frame_id or M.CAMERA_FRAME_ID,
            odom_from_camera=self.odometry.get(stamp),
        )
        state['index'] += 1
        return frame

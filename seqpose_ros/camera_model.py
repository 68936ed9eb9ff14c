"""CameraInfo -> the intrinsics the model needs, for `seqpose_node`: validation, and the camera model (D, P,
binning, ROI) applied to raw or rectified images. Plain functions (tested without ROS)."""

import numpy as np

from seqpose_ros.images import InputError


# --------------------------------------------------------------------------------------------- camera info
def camera_info_to_K(k, width, height, topic='camera_info'):
    """CameraInfo.k (9 numbers, row-major) -> validated 3x3 K. Width / height are only used in messages."""
    values = np.asarray(list(k), dtype=np.float64)
    if values.size != 9:
        raise InputError(
            f'{topic}: K has {values.size} values, expected 9; frames skipped until a valid CameraInfo arrives'
        )
    K = values.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        raise InputError(
            f'{topic}: K contains NaN or infinite values {K.tolist()}; frames skipped until a valid CameraInfo arrives'
        )
    if not np.any(K):
        raise InputError(
            f'{topic}: K is all zeros (uncalibrated camera?); frames skipped until a calibrated CameraInfo arrives'
        )
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f'{topic}: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}; frames skipped')
    if not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0:
        raise InputError(
            f'{topic}: K is not an upper-triangular intrinsics matrix with last row [0, 0, 1]: '
            f'{K.tolist()}; frames skipped'
        )
    return K


DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', 'equidistant')


def _valid_pinhole(M):
    return (
        M.shape == (3, 3)
        and np.all(np.isfinite(M))
        and M[0, 0] > 0
        and M[1, 1] > 0
        and np.allclose(M[2], (0.0, 0.0, 1.0))
    )


class CameraModel:
    """What the node needs from a CameraInfo, validated once per distinct CameraInfo (sensor_msgs/CameraInfo
    semantics, as image_geometry's PinholeCameraModel):

    - `raw` images (image_raw): K describes them; a non-zero D means the pixels are distorted, so each image
      is undistorted (cv2, maps built once) onto the camera matrix of P (K when P is not set) and that matrix
      is what the model sees. Models: plumb_bob, rational_polynomial, equidistant.
    - `rectified` images (image_rect, image_proc's output): P[0:3, 0:3] describes them; D is ignored.
    - binning_x/y and roi (x_offset, y_offset, width, height) describe a sub-sampled or cropped image of the
      calibrated one: the intrinsics are shifted by the ROI offset and divided by the binning, and the
      expected image size follows. Undistorting a binned or cropped raw image is refused (rectify it upstream).

    `K` is the 3x3 intrinsics of the image the runner gets; `expected_hw` the (height, width) the image must
    have ((0, 0): the CameraInfo gives none); `notes` are one-time log lines (what was decided and why);
    `error` is set (and K None) when the CameraInfo cannot be used."""

    def __init__(
        self,
        width,
        height,
        k,
        d=(),
        distortion_model='',
        p=None,
        r=None,
        binning_x=0,
        binning_y=0,
        roi=(0, 0, 0, 0),
        image_kind='raw',
        topic='camera_info',
    ):
        self.topic = topic
        self.notes = []
        self.error = ''
        self.K = None
        self.undistort_from = None  # (K, D, R, model) when images must be undistorted
        self._maps = {}
        try:
            self._build(
                int(width),
                int(height),
                k,
                d,
                distortion_model,
                p,
                r,
                int(binning_x or 0),
                int(binning_y or 0),
                tuple(int(v) for v in roi),
                image_kind,
            )
        except InputError as error:
            self.error = str(error)
            self.K = None

    def _build(self, width, height, k, d, distortion_model, p, r, binning_x, binning_y, roi, image_kind):
        topic = self.topic
        K = camera_info_to_K(k, width, height, topic)
        D = np.asarray(list(d), dtype=np.float64)
        P = np.asarray(list(p), dtype=np.float64).reshape(3, 4)[:, :3] if p is not None and len(p) == 12 else None
        P_valid = P is not None and _valid_pinhole(P)
        distorted = D.size > 0 and bool(np.any(np.abs(D) > 1e-12))
        x_offset, y_offset, roi_h, roi_w = roi
        bx, by = max(binning_x, 1), max(binning_y, 1)
        cropped = roi_w > 0 and roi_h > 0 and (roi_w, roi_h) != (width, height)
        if image_kind == 'rectified':
            if P_valid:
                intrinsics = P.copy()
            else:
                intrinsics = K.copy()
                self.notes.append(f'{topic}: P is not set; using K for the rectified image')
        else:
            intrinsics = K.copy()
            if distorted:
                if not np.all(np.isfinite(D)):
                    raise InputError(f'{topic}: D contains NaN or infinite values; frames skipped')
                if distortion_model not in DISTORTION_MODELS:
                    raise InputError(
                        f"{topic}: distortion_model '{distortion_model}' with non-zero D is not "
                        f'supported (supported: {", ".join(DISTORTION_MODELS)}): publish a '
                        'rectified image (image_proc) and set camera_model:=rectified; frames skipped'
                    )
                if bx > 1 or by > 1 or cropped:
                    raise InputError(
                        f'{topic}: undistorting a binned ({bx}x{by}) or ROI-cropped raw image is not '
                        'supported: rectify it upstream (image_proc) and set camera_model:=rectified; '
                        'frames skipped'
                    )
                R = np.asarray(list(r), dtype=np.float64).reshape(3, 3) if r is not None and len(r) == 9 else None
                if R is None or not np.all(np.isfinite(R)) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6):
                    R = np.eye(3)
                intrinsics = P.copy() if P_valid else K.copy()
                self.undistort_from = (K, D, R, distortion_model)
                self.notes.append(
                    f'{topic}: non-zero D ({distortion_model}) on a raw image: undistorting each image '
                    'onto ' + ('P' if P_valid else 'K') + ' before the model (subscribe to a rectified '
                    'topic and set camera_model:=rectified to save this work)'
                )
        if cropped or (x_offset or y_offset):
            intrinsics[0, 2] -= x_offset
            intrinsics[1, 2] -= y_offset
        if bx > 1 or by > 1:
            intrinsics[0, :] /= bx
            intrinsics[1, :] /= by
            self.notes.append(f'{topic}: binning {bx}x{by} applied to the intrinsics')
        if cropped:
            self.notes.append(f'{topic}: ROI {roi_w}x{roi_h} at ({x_offset}, {y_offset}) applied to the intrinsics')
        full_w, full_h = (roi_w, roi_h) if cropped else (width, height)
        self.expected_hw = (full_h // by, full_w // bx) if (full_w and full_h) else (0, 0)
        self.K = intrinsics

    @property
    def needs_undistortion(self):
        return self.undistort_from is not None

    def undistort(self, rgb):
        """The image undistorted onto self.K (the same array when no undistortion is needed)."""
        if self.undistort_from is None:
            return rgb
        import cv2

        h, w = rgb.shape[:2]
        maps = self._maps.get((h, w))
        if maps is None:
            K, D, R, model = self.undistort_from
            if model == 'equidistant':
                maps = cv2.fisheye.initUndistortRectifyMap(K, D[:4], R, self.K, (w, h), cv2.CV_16SC2)
            else:
                maps = cv2.initUndistortRectifyMap(K, D, R, self.K, (w, h), cv2.CV_16SC2)
            self._maps = {(h, w): maps}
        return cv2.remap(rgb, maps[0], maps[1], cv2.INTER_LINEAR)


def camera_model_from_msg(msg, image_kind='raw', topic='camera_info'):
    roi = msg.roi
    return CameraModel(
        msg.width,
        msg.height,
        msg.k,
        msg.d,
        msg.distortion_model,
        msg.p,
        msg.r,
        msg.binning_x,
        msg.binning_y,
        (roi.x_offset, roi.y_offset, roi.height, roi.width),
        image_kind,
        topic,
    )


def image_kind_for(camera_model, image_topic):
    """'raw' | 'rectified' for the camera_model parameter ('auto': by the image topic's name)."""
    if camera_model in ('raw', 'rectified'):
        return camera_model
    name = image_topic.rstrip('/').split('/')
    last = name[-2] if name[-1] == 'compressed' and len(name) > 1 else name[-1]
    return 'rectified' if 'rect' in last else 'raw'


def check_image_matches_camera_info(image_hw, info_hw, image_topic='image', info_topic='camera_info'):
    """Raise when the image size disagrees with the CameraInfo's (0 x 0 in CameraInfo = not given)."""
    info_h, info_w = int(info_hw[0]), int(info_hw[1])
    if info_h == 0 and info_w == 0:
        return
    if (int(image_hw[0]), int(image_hw[1])) != (info_h, info_w):
        raise InputError(
            f'{image_topic}: image is {image_hw[1]}x{image_hw[0]} but {info_topic} says '
            f'{info_w}x{info_h} (K would be wrong); frame skipped'
        )

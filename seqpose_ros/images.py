"""Image messages -> RGB arrays for `seqpose_node`: raw encodings, cv_bridge where a ROS install has it,
compressed images with their header size checked before decoding. Plain functions over the message fields
(tested without ROS); every problem raises `InputError`, whose text names the input and what was wrong.
"""

import numpy as np

# encoding -> (channels in the message, channel order to get RGB)
ENCODINGS = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0, 0, 0)),
}

# The smallest and largest image the node processes (the model resizes to its input: an image with a side
# under MIN_IMAGE_SIDE carries no usable object, and one over MAX_IMAGE_PIXELS is refused before decoding).
MIN_IMAGE_SIDE = 16
MAX_IMAGE_SIDE = 16384
MAX_IMAGE_PIXELS = 40_000_000


class InputError(ValueError):
    """A message the node cannot use; the text is the log line (names the input and what was wrong).

    `kind` is the log-throttling key: one problem repeating is logged once per period, while two different
    problems (two encodings, say) each get their own line. Default: the text with its numbers blanked."""

    def __init__(self, text, kind=None):
        super().__init__(text)
        self.kind = kind or problem_kind(text)


def problem_kind(text):
    """Throttling key: the message with its numbers blanked, so repeats of one problem (differing only in
    sizes, stamps or ages) share a key. Quoted words (encodings, formats, frame ids) are kept as they are."""
    import re

    parts = re.split(r"('[^']*')", str(text))
    return ''.join(part if part.startswith("'") else re.sub(r'[-+]?\d[\d.e+-]*', '#', part) for part in parts)


def check_image_size(width, height, topic='image'):
    """Raise InputError (a warning, frame skipped) for images too small or too large for the model."""
    width, height = int(width), int(height)
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(
            f'{topic}: image is {width}x{height}, too small for the model (each side must be at '
            f'least {MIN_IMAGE_SIDE} px); frame skipped',
            kind=f'{topic}:too small',
        )
    if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise InputError(
            f'{topic}: image is {width}x{height}, larger than the node accepts (at most '
            f'{MAX_IMAGE_SIDE} px a side and {MAX_IMAGE_PIXELS / 1e6:g} Mpixel); frame skipped',
            kind=f'{topic}:too large',
        )


# --------------------------------------------------------------------------------------------- images
def image_to_rgb(height, width, encoding, step, data, topic='image'):
    """sensor_msgs/Image fields -> (H, W, 3) uint8 RGB (a fresh, writable, contiguous array).

    Rows may be padded (`step` > width * channels, as many drivers align rows): only the first
    width * channels bytes of each row are image data."""
    height, width, step = int(height), int(width), int(step)
    if encoding not in ENCODINGS:
        raise InputError(
            f"{topic}: unsupported encoding '{encoding}' (supported: {', '.join(ENCODINGS)}); frame skipped",
            kind=f'{topic}:encoding:{encoding}',
        )
    channels, order = ENCODINGS[encoding]
    if height <= 0 or width <= 0 or len(data) == 0:
        raise InputError(f'{topic}: empty image ({width}x{height}, {len(data)} bytes); frame skipped')
    row_bytes = width * channels
    if step < row_bytes:
        raise InputError(
            f"{topic}: step {step} is smaller than width {width} x {channels} channels of '{encoding}'; frame skipped"
        )
    if len(data) < step * (height - 1) + row_bytes:
        raise InputError(
            f'{topic}: data holds {len(data)} bytes but {width}x{height} {encoding} with step '
            f'{step} needs {step * height}; frame skipped'
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    if len(buffer) < step * height:
        # the last row may legally omit its padding
        buffer = np.concatenate([buffer, np.zeros(step * height - len(buffer), np.uint8)])
    rows = buffer[: step * height].reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if encoding == 'rgb8':
        return np.array(rows, copy=True)  # a copy: the runner wants a writable array it can own
    if encoding == 'mono8':
        return np.repeat(rows, 3, axis=2)
    return np.ascontiguousarray(rows[:, :, list(order)])


def _cv_bridge():
    """cv_bridge's CvBridge where a ROS install has it (None in the pip-only set-up)."""
    try:
        from cv_bridge import CvBridge
    except ImportError:
        return None
    return CvBridge()


def image_msg_to_rgb(msg, topic='image', bridge=None):
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB. The encodings in ENCODINGS are converted here (checked
    field by field, with a clear reason for each problem); any other encoding goes through cv_bridge when it
    is installed (yuv422, bayer_*, 16-bit colour, ...), else it is refused with the list of supported ones."""
    if msg.encoding not in ENCODINGS and bridge is not None:
        check_image_size(msg.width, msg.height, topic)
        try:
            rgb = bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8')
        except Exception as error:  # noqa: BLE001 - cv_bridge raises CvBridgeError and cv2 errors
            raise InputError(
                f"{topic}: cv_bridge cannot convert encoding '{msg.encoding}' to rgb8 ({error}); frame skipped",
                kind=f'{topic}:encoding:{msg.encoding}',
            ) from None
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputError(
                f"{topic}: cv_bridge gave shape {rgb.shape} for encoding '{msg.encoding}'; frame skipped",
                kind=f'{topic}:encoding:{msg.encoding}',
            )
        return rgb
    return image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data, topic)


def compressed_image_size(data):
    """(width, height, 'png' | 'jpeg') read from the PNG IHDR or the JPEG start-of-frame header, without
    decoding the pixels; None when the bytes are neither (cv2 then decides). Lets the node refuse a small
    file that declares a huge image before the decoder allocates it."""
    data = bytes(data[:65536]) if not isinstance(data, (bytes, bytearray)) else data
    if data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) >= 24 and data[12:16] == b'IHDR':
        return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big'), 'png'
    if data[:2] == b'\xff\xd8':
        index = 2
        while index + 4 <= len(data):
            if data[index] != 0xFF:
                index += 1  # tolerate fill bytes / garbage between segments
                continue
            marker = data[index + 1]
            if marker == 0xFF:
                index += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                index += 2  # markers without a length
                continue
            length = int.from_bytes(data[index + 2 : index + 4], 'big')
            # start of frame: C0-CF except C4 (huffman tables), C8 (reserved), CC (arithmetic coding)
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if index + 9 > len(data):
                    return None
                height = int.from_bytes(data[index + 5 : index + 7], 'big')
                width = int.from_bytes(data[index + 7 : index + 9], 'big')
                return width, height, 'jpeg'
            if marker == 0xDA or length < 2:  # start of scan before any frame header: not a usable jpeg
                return None
            index += 2 + length
    return None


def compressed_to_rgb(image_format, data, topic='image/compressed', expected_hw=None):
    """sensor_msgs/CompressedImage fields -> (H, W, 3) uint8 RGB (jpeg / png through cv2.imdecode). The size
    in the file's header is checked first (limits, and `expected_hw` from the CameraInfo when given), so a
    small file declaring a huge image is refused without decoding it."""
    import cv2

    if len(data) == 0:
        raise InputError(f'{topic}: empty CompressedImage (format {image_format!r}); frame skipped')
    header = compressed_image_size(data)
    if header is not None:
        width, height, kind = header
        try:
            check_image_size(width, height, topic)
        except InputError as error:
            raise InputError(
                f'{topic}: {kind} header declares {width}x{height}: {str(error).split(": ", 1)[1]} (not decoded)',
                kind=error.kind,
            ) from None
        if (
            expected_hw is not None
            and tuple(int(v) for v in expected_hw) != (0, 0)
            and (height, width) != tuple(int(v) for v in expected_hw)
        ):
            raise InputError(
                f'{topic}: {kind} header declares {width}x{height} but the CameraInfo says '
                f'{int(expected_hw[1])}x{int(expected_hw[0])}; frame skipped (not decoded)',
                kind=f'{topic}:size mismatch',
            )
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if decoded is None or decoded.size == 0:
        raise InputError(
            f'{topic}: cannot decode {len(data)} bytes of format {image_format!r} (expected jpeg or png); frame skipped'
        )
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def rgb_to_image_fields(rgb):
    """(H, W, 3) uint8 RGB -> dict of sensor_msgs/Image fields (rgb8, no padding)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    return dict(height=height, width=width, encoding='rgb8', is_bigendian=0, step=width * 3, data=rgb.tobytes())

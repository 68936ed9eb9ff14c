"""Offscreen rendering of synthetic scenes with moderngl on EGL: colour, metric depth, instance ids and the
NOCS coordinate map from a single render pass into two render targets.

Render targets (one framebuffer, reused for every frame). They hold the values already encoded as the NOCS
files store them, so the CPU only reads them back and compresses PNGs:
- target 0, RGBA8: shaded colour in BGR order (what cv2 writes); the instance id / 255 in alpha (0 = table or
  background), exact because an 8-bit channel stores round(a * 255).
- target 1, RGBA8: the NOCS map as the coord PNG stores it: BGR order of (x, y, 1 - z) with x, y, z the NOCS
  coordinates (normalised vertex position + 0.5); 0 off objects. The official decoding (BGR->RGB, /255,
  z = 1 - z) gives back x, y, z.
- target 2, R16UI: depth in millimetres (camera z, rounded), 0 where nothing was drawn (beyond the table).

Camera model: the OpenCV pinhole (x right, y down, z forward, pixel centres at integer coordinates), used
directly as the eye frame. The usual recipe turns OpenCV into an OpenGL camera (flip y and z), projects, and
flips the read-back image upside down. We fold both flips into the projection instead: clip w = +z (so the
camera looks along +z), NDC y grows with the image row v, and since glReadPixels returns the bottom window
row first, that row is image row 0 — the read-back arrays are already in image order. `opencv_projection`
is checked against `geometry.project_points` in the tests.
"""

from dataclasses import dataclass
from importlib import resources

import numpy as np

NEAR, FAR = 0.02, 30.0
MAX_SHADOW_BLOBS = 8

# pattern ids of the object fragment shader
PATTERNS = ('plain', 'bands', 'label', 'checker', 'blotches', 'vertical_stripes')


@dataclass
class Appearance:
    """Per-object surface colours and procedural pattern (in NOCS coordinates, so it sticks to the object)."""

    color_main: np.ndarray  # RGB in [0, 1]
    color_pattern: np.ndarray
    color_secondary: np.ndarray  # MATERIAL_SECONDARY surfaces: laptop screen/keyboard, camera lens
    pattern: int
    pattern_frequency: float
    pattern_offset: float
    specular: float
    shininess: float


@dataclass
class Light:
    direction_world: np.ndarray  # unit vector from the surface towards the light (world frame, y up)
    color: np.ndarray  # RGB intensity of the directional light
    ambient: np.ndarray  # RGB ambient intensity


@dataclass
class RenderOutput:
    color_bgr: np.ndarray  # (H, W, 3) uint8, BGR
    instance: np.ndarray  # (H, W) uint8, 0 = no object, else the instance id
    coord_bgr: np.ndarray  # (H, W, 3) uint8, the coord PNG's pixels (see the module docstring)
    depth_mm: np.ndarray  # (H, W) uint16 millimetres, 0 = nothing drawn (beyond the table)

    @property
    def color(self):
        """(H, W, 3) uint8 RGB."""
        return self.color_bgr[..., ::-1]

    @property
    def depth(self):
        """(H, W) float32 metres."""
        return self.depth_mm.astype(np.float32) / 1000.0

    @property
    def nocs(self):
        """(H, W, 3) float32 NOCS coordinates in [0, 1] (object coordinates + 0.5), 0 off objects."""
        values = self.coord_bgr[..., ::-1].astype(np.float32) / 255.0
        values[..., 2] = np.where(self.instance > 0, 1.0 - values[..., 2], 0.0)
        return values


def opencv_projection(K, width, height, near=NEAR, far=FAR):
    """4x4 projection (row-major) from OpenCV camera coordinates to clip space, see the module docstring.

    Pixel u (centre convention) lies at window x = u + 0.5, so x_ndc = 2 (u + 0.5) / W - 1 with u = fx x/z + cx.
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    skew = K[0, 1]
    return np.array(
        [
            [2 * fx / width, 2 * skew / width, (2 * cx + 1) / width - 1, 0],
            [0, 2 * fy / height, (2 * cy + 1) / height - 1, 0],
            [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, 1, 0],
        ],
        dtype=np.float64,
    )


# Python-side constants the shaders use, #defined after their #version line (GLSL has no other way in)
SHADER_DEFINES = {'MAX_SHADOW_BLOBS': MAX_SHADOW_BLOBS}
SHADER_INCLUDES = ('shading.glsl',)  # `#include "<name>"` in a shader; moderngl resolves them


def shader_source(name):
    """GLSL source of `shaders/<name>` (package data), with SHADER_DEFINES after its #version line."""
    lines = []
    for line in (resources.files(__package__) / 'shaders' / name).read_text(encoding='utf-8').splitlines():
        lines.append(line)
        if line.startswith('#version'):
            lines.extend(f'#define {key} {value}' for key, value in SHADER_DEFINES.items())
    return '\n'.join(lines) + '\n'


def _mat4_bytes(matrix):
    """Row-major numpy 4x4 -> GLSL (column-major) bytes."""
    return np.ascontiguousarray(np.asarray(matrix, np.float32).T).tobytes()


def _mat3_bytes(matrix):
    return np.ascontiguousarray(np.asarray(matrix, np.float32).T).tobytes()


def create_context():
    """A headless OpenGL 3.3+ context on EGL (GPU when there is one, Mesa llvmpipe on the CPU otherwise)."""
    import moderngl

    try:
        return moderngl.create_standalone_context(backend='egl', require=330)
    except Exception as error:  # moderngl raises plain Exception for a missing EGL/driver
        raise RuntimeError(
            f'cannot create an OpenGL 3.3 context on EGL ({error}); install libegl1 and Mesa '
            '(libegl-mesa0, libgl1-mesa-dri) or a GPU driver with EGL'
        ) from None


class Renderer:
    """One GL context, programs and framebuffer, reused for every scene and frame of a given image size."""

    def __init__(self, width, height, context=None):
        import moderngl

        self.width, self.height = int(width), int(height)
        self._owns_context = context is None
        self.ctx = context or create_context()
        ctx = self.ctx
        for name in SHADER_INCLUDES:
            ctx.includes[name] = shader_source(name)
        self.object_program = self._program('object')
        self.table_program = self._program('table')
        self.background_program = self._program('background')
        quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32)
        self.quad_buffer = ctx.buffer(quad.tobytes())
        self.table_vao = ctx.vertex_array(self.table_program, [(self.quad_buffer, '2f', 'in_corner')])
        self.background_vao = ctx.vertex_array(self.background_program, [(self.quad_buffer, '2f', 'in_corner')])
        size = (self.width, self.height)
        self.fbo = ctx.framebuffer(
            color_attachments=[
                ctx.renderbuffer(size, 4),
                ctx.renderbuffer(size, 4),
                ctx.renderbuffer(size, 1, dtype='u2'),
            ],
            depth_attachment=ctx.depth_renderbuffer(size),
        )
        self._moderngl = moderngl
        self._object_buffer = None
        self._object_vao = None
        self._textures = []
        self.objects = []

    def _program(self, name):
        return self.ctx.program(
            vertex_shader=shader_source(f'{name}.vert.glsl'), fragment_shader=shader_source(f'{name}.frag.glsl')
        )

    # ---------------------------------------------------------------------------------------------------
    def load_scene(
        self, objects, table_half_size, table_texture, background_image, light, table_tiles=2.0, shadow_strength=0.45
    ):
        """Upload a scene. `objects`: list of (ObjectModel, Appearance, instance_id); textures RGB uint8."""
        ctx = self.ctx
        self._release_scene()
        chunks, self.objects = [], []
        first = 0
        for model, appearance, instance_id in objects:
            if not 1 <= int(instance_id) <= 254:
                raise ValueError(f'instance id {instance_id} must be in 1..254 (255 is the mask background)')
            triangles = model.faces.reshape(-1)
            interleaved = np.concatenate(
                [model.vertices[triangles], model.normals[triangles], model.materials[triangles, None]], axis=1
            ).astype(np.float32)
            chunks.append(interleaved)
            self.objects.append((model, appearance, int(instance_id), first, len(triangles)))
            first += len(triangles)
        if chunks:
            self._object_buffer = ctx.buffer(np.concatenate(chunks).tobytes())
            self._object_vao = ctx.vertex_array(
                self.object_program, [(self._object_buffer, '3f 3f 1f', 'in_position', 'in_normal', 'in_material')]
            )
        self.table_texture = self._texture(table_texture, repeat=True)
        self.background_texture = self._texture(background_image, repeat=False)
        self._background_aspect = background_image.shape[1] / background_image.shape[0]
        self.table_half_size = np.asarray(table_half_size, np.float64)
        self.table_tiles = float(table_tiles)
        self.shadow_strength = float(shadow_strength)
        self.light = light

    def _texture(self, image, repeat):
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'texture must be (H, W, 3) uint8 RGB, got shape {image.shape}')
        texture = self.ctx.texture((image.shape[1], image.shape[0]), 3, image.tobytes(), alignment=1)
        texture.build_mipmaps()
        texture.filter = (self._moderngl.LINEAR_MIPMAP_LINEAR, self._moderngl.LINEAR)
        texture.repeat_x = texture.repeat_y = repeat
        self._textures.append(texture)
        return texture

    def _release_scene(self):
        for resource in [self._object_vao, self._object_buffer] + self._textures:
            if resource is not None:
                resource.release()
        self._object_vao = self._object_buffer = None
        self._textures = []

    def release(self):
        self._release_scene()
        for resource in (
            self.fbo,
            self.table_vao,
            self.background_vao,
            self.quad_buffer,
            self.object_program,
            self.table_program,
            self.background_program,
        ):
            resource.release()
        if self._owns_context:
            self.ctx.release()

    # ---------------------------------------------------------------------------------------------------
    def render(
        self,
        K,
        camera_from_world,
        world_from_objects,
        shadow_blobs=(),
        noise_seed=0.0,
        noise_amplitude=0.02,
        background_brightness=1.0,
    ):
        """Render one frame. `world_from_objects`: rigid 4x4 poses (metres) of the scene's objects, in the
        order given to load_scene; `shadow_blobs`: (world x, world z, radius) per object footprint."""
        ctx = self.ctx
        K = np.asarray(K, np.float64)
        camera_from_world = np.asarray(camera_from_world, np.float64)
        projection = _mat4_bytes(opencv_projection(K, self.width, self.height))
        light_camera = camera_from_world[:3, :3] @ self.light.direction_world
        self.fbo.use()
        ctx.viewport = (0, 0, self.width, self.height)
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)

        # background: a crop of the image with the viewport's aspect ratio, behind everything, no depth
        ctx.disable(self._moderngl.DEPTH_TEST)
        program = self.background_program
        viewport_aspect = self.width / self.height
        if self._background_aspect > viewport_aspect:
            uv_scale = (viewport_aspect / self._background_aspect, 1.0)
        else:
            uv_scale = (1.0, self._background_aspect / viewport_aspect)
        program['viewport_size'].value = (float(self.width), float(self.height))
        program['uv_scale'].value = uv_scale
        program['uv_offset'].value = ((1 - uv_scale[0]) / 2, (1 - uv_scale[1]) / 2)
        program['brightness'].value = float(background_brightness)
        self.background_texture.use(0)
        program['background_texture'].value = 0
        self.background_vao.render(self._moderngl.TRIANGLE_STRIP)
        ctx.enable(self._moderngl.DEPTH_TEST)

        for program in (self.table_program, self.object_program):
            program['projection'].write(projection)
            program['light_direction'].value = tuple(light_camera)
            program['light_color'].value = tuple(self.light.color)
            program['ambient'].value = tuple(self.light.ambient)
            program['noise_seed'].value = float(noise_seed)
            program['noise_amplitude'].value = float(noise_amplitude)

        program = self.table_program
        program['camera_from_world'].write(_mat4_bytes(camera_from_world))
        program['half_size'].value = tuple(self.table_half_size)
        program['texture_tiles'].value = self.table_tiles
        program['table_normal'].value = tuple(camera_from_world[:3, 1])
        blobs = np.zeros((MAX_SHADOW_BLOBS, 3), np.float32)
        blobs[: min(len(shadow_blobs), MAX_SHADOW_BLOBS)] = np.asarray(shadow_blobs, np.float32).reshape(-1, 3)[
            :MAX_SHADOW_BLOBS
        ]
        program['shadow_blobs'].write(blobs.tobytes())
        light = self.light.direction_world
        program['shadow_offset'].value = (
            float(-light[0] / max(light[1], 0.2)) * 0.5,
            float(-light[2] / max(light[1], 0.2)) * 0.5,
        )
        program['shadow_strength'].value = self.shadow_strength
        self.table_texture.use(0)
        program['table_texture'].value = 0
        self.table_vao.render(self._moderngl.TRIANGLE_STRIP)

        program = self.object_program
        if len(world_from_objects) != len(self.objects):
            raise ValueError(f'{len(world_from_objects)} object poses for {len(self.objects)} loaded objects')
        for (model, appearance, instance_id, first, count), world_from_object in zip(self.objects, world_from_objects):
            camera_from_object = camera_from_world @ np.asarray(world_from_object, np.float64)
            model_view = camera_from_object.copy()
            model_view[:3, :3] *= model.scale
            program['model_view'].write(_mat4_bytes(model_view))
            program['normal_rotation'].write(_mat3_bytes(camera_from_object[:3, :3]))
            program['color_main'].value = tuple(appearance.color_main)
            program['color_pattern'].value = tuple(appearance.color_pattern)
            program['color_secondary'].value = tuple(appearance.color_secondary)
            program['pattern'].value = int(appearance.pattern)
            program['pattern_frequency'].value = float(appearance.pattern_frequency)
            program['pattern_offset'].value = float(appearance.pattern_offset)
            program['specular'].value = float(appearance.specular)
            program['shininess'].value = float(appearance.shininess)
            program['instance_value'].value = instance_id / 255.0
            self._object_vao.render(self._moderngl.TRIANGLES, vertices=count, first=first)

        # fresh arrays per frame: the writer encodes them in background threads while the next frame renders
        color = np.empty((self.height, self.width, 4), np.uint8)
        coord = np.empty((self.height, self.width, 4), np.uint8)
        depth_mm = np.empty((self.height, self.width), np.uint16)
        self.fbo.read_into(color, components=4, attachment=0, dtype='f1')
        self.fbo.read_into(coord, components=4, attachment=1, dtype='f1')
        self.fbo.read_into(depth_mm, components=1, attachment=2, dtype='u2')
        return RenderOutput(
            color_bgr=color[..., :3], instance=color[..., 3], coord_bgr=coord[..., :3], depth_mm=depth_mm
        )

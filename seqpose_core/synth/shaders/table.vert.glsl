#version 330
uniform mat4 projection;
uniform mat4 camera_from_world;
uniform vec2 half_size;
uniform float texture_tiles;
in vec2 in_corner;  // in [-1, 1]^2
out vec3 v_camera;
out vec2 v_world;
out vec2 v_uv;
void main() {
    vec2 world = in_corner * half_size;
    vec4 camera = camera_from_world * vec4(world.x, 0.0, world.y, 1.0);
    v_camera = camera.xyz;
    v_world = world;
    v_uv = world * texture_tiles;
    gl_Position = projection * camera;
}

#version 330
uniform mat4 projection;
uniform mat4 model_view;      // normalised object frame -> OpenCV camera frame, scale included
uniform mat3 normal_rotation;  // object -> camera rotation
in vec3 in_position;
in vec3 in_normal;
in float in_material;
out vec3 v_nocs;
out vec3 v_camera;
out vec3 v_normal;
out float v_material;
void main() {
    vec4 camera = model_view * vec4(in_position, 1.0);
    v_camera = camera.xyz;
    v_nocs = in_position + 0.5;
    v_normal = normal_rotation * in_normal;
    v_material = in_material;
    gl_Position = projection * camera;
}

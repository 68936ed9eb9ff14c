#version 330
uniform vec3 color_main;
uniform vec3 color_pattern;
uniform vec3 color_secondary;
uniform int pattern;
uniform float pattern_frequency;
uniform float pattern_offset;
uniform float specular;
uniform float shininess;
uniform float instance_value;  // instance id / 255
in vec3 v_nocs;
in vec3 v_camera;
in vec3 v_normal;
in float v_material;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_coord;
layout(location = 2) out uint out_depth_mm;
#include "shading.glsl"
float pattern_mask(vec3 p) {
    if (pattern == 1) return step(fract(p.y * pattern_frequency + pattern_offset), 0.5);
    if (pattern == 2) return step(abs(p.y - pattern_offset), 0.5 / pattern_frequency);
    if (pattern == 3) return mod(dot(floor(p * pattern_frequency), vec3(1.0)), 2.0);
    if (pattern == 4) {
        float s = sin(p.x * pattern_frequency * 6.28 + pattern_offset * 10.0) * sin(p.y * pattern_frequency * 5.1)
                  * sin(p.z * pattern_frequency * 7.3 + pattern_offset * 3.0);
        return smoothstep(-0.1, 0.1, s);
    }
    if (pattern == 5) {
        float around = atan(p.z - 0.5, p.x - 0.5) / 6.2832 + 0.5;
        return step(fract(around * floor(pattern_frequency) + pattern_offset), 0.5);
    }
    return 0.0;
}
void main() {
    vec3 albedo;
    if (v_material > 0.5 && v_material < 1.5) albedo = color_secondary;
    else if (v_material > 1.5) albedo = color_main;  // mug handle: plain body colour
    else albedo = mix(color_main, color_pattern, pattern_mask(v_nocs));
    float is_secondary = float(v_material > 0.5 && v_material < 1.5);
    vec3 color = shade(albedo, normalize(v_normal), v_camera, mix(specular, 0.6, is_secondary),
                       mix(shininess, 60.0, is_secondary));
    out_color = vec4(clamp(color.bgr, 0.0, 1.0), instance_value);
    out_coord = vec4(1.0 - v_nocs.z, v_nocs.y, v_nocs.x, 0.0);
    out_depth_mm = uint(clamp(v_camera.z * 1000.0 + 0.5, 0.0, 65535.0));
}

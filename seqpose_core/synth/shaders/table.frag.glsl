#version 330
// MAX_SHADOW_BLOBS: #defined by the loader from render.MAX_SHADOW_BLOBS (the uniform array the renderer fills)
uniform sampler2D table_texture;
uniform vec3 table_normal;  // world up in the camera frame
uniform vec3 shadow_blobs[MAX_SHADOW_BLOBS];  // world x, z, radius (radius 0 = unused)
uniform vec2 shadow_offset;  // blobs shift away from the light
uniform float shadow_strength;
in vec3 v_camera;
in vec2 v_world;
in vec2 v_uv;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_coord;
layout(location = 2) out uint out_depth_mm;
#include "shading.glsl"
void main() {
    vec3 albedo = texture(table_texture, v_uv).rgb;
    float shadow = 1.0;
    for (int i = 0; i < MAX_SHADOW_BLOBS; ++i) {
        vec3 blob = shadow_blobs[i];
        if (blob.z <= 0.0) continue;
        float distance = length(v_world - blob.xy - shadow_offset * blob.z);
        shadow *= 1.0 - shadow_strength * (1.0 - smoothstep(0.55 * blob.z, 1.25 * blob.z, distance));
    }
    vec3 color = shade(albedo * shadow, table_normal, v_camera, 0.05, 8.0);
    out_color = vec4(clamp(color.bgr, 0.0, 1.0), 0.0);
    out_coord = vec4(0.0);
    out_depth_mm = uint(clamp(v_camera.z * 1000.0 + 0.5, 0.0, 65535.0));
}

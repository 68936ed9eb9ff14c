#version 330
uniform sampler2D background_texture;
uniform vec2 viewport_size;
uniform vec2 uv_scale;   // crop of the image that fills the viewport with its aspect ratio kept
uniform vec2 uv_offset;
uniform float brightness;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_coord;
layout(location = 2) out uint out_depth_mm;
void main() {
    // window row 0 is image row 0 (see the module docstring), as is texture row 0 of an uploaded numpy image
    vec2 uv = gl_FragCoord.xy / viewport_size * uv_scale + uv_offset;
    out_color = vec4(clamp(texture(background_texture, uv).bgr * brightness, 0.0, 1.0), 0.0);
    out_coord = vec4(0.0);
    out_depth_mm = 0u;  // also clears the integer target, which glClear may not
}

// Included by the object and table fragment shaders: Blinn-Phong with one directional light, two-sided,
// plus per-pixel sensor noise.
uniform vec3 light_direction;  // camera frame, towards the light
uniform vec3 light_color;
uniform vec3 ambient;
uniform float noise_seed;
uniform float noise_amplitude;
float hash(vec2 p) { return fract(sin(dot(p, vec2(12.9898, 78.233)) + noise_seed) * 43758.5453); }
vec3 shade(vec3 albedo, vec3 normal, vec3 position, float specular, float shininess) {
    vec3 view = normalize(-position);
    if (dot(normal, view) < 0.0) normal = -normal;  // two-sided: users' meshes may have any winding
    float diffuse = max(dot(normal, light_direction), 0.0);
    vec3 half_vector = normalize(light_direction + view);
    float highlight = specular * pow(max(dot(normal, half_vector), 0.0), shininess) * step(0.0, diffuse);
    vec3 color = albedo * (ambient + light_color * diffuse) + light_color * highlight;
    // sensor noise, per pixel
    return color + noise_amplitude * (hash(gl_FragCoord.xy) - 0.5);
}

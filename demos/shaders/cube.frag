#version 450
layout(location = 0) in vec3 color;
layout(location = 1) in vec3 normal;
layout(location = 0) out vec4 out_color;

void main() {
    const vec3 light = normalize(vec3(0.4, 0.7, 0.6));
    float diffuse = max(dot(normalize(normal), light), 0.0);
    out_color = vec4(color * (0.25 + 0.75 * diffuse), 1.0);
}

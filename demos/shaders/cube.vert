#version 450
// A lit, vertex-coloured cube. All animation maths happens here, on the GPU:
// the guest's frames are rendered by the host's driver through Venus, so the
// same shader on the host gives bit-identical frames (CPU-side sin/cos would
// differ between the guest's aarch64 libm and the host's x86_64 one).
layout(push_constant) uniform Push {
    float time;    // animation time in seconds (frame index / 60)
    float aspect;  // width / height
} push;

layout(location = 0) out vec3 color;
layout(location = 1) out vec3 normal;

const vec3 corners[8] = vec3[](
    vec3(-1, -1, -1), vec3(1, -1, -1), vec3(1, 1, -1), vec3(-1, 1, -1),
    vec3(-1, -1, 1), vec3(1, -1, 1), vec3(1, 1, 1), vec3(-1, 1, 1));
// Two triangles per face: -z, +z, -x, +x, -y, +y.
const int indices[36] = int[](
    0, 2, 1, 0, 3, 2,   4, 5, 6, 4, 6, 7,   0, 4, 7, 0, 7, 3,
    1, 2, 6, 1, 6, 5,   0, 1, 5, 0, 5, 4,   3, 7, 6, 3, 6, 2);
const vec3 normals[6] = vec3[](
    vec3(0, 0, -1), vec3(0, 0, 1), vec3(-1, 0, 0), vec3(1, 0, 0), vec3(0, -1, 0), vec3(0, 1, 0));
const vec3 colors[6] = vec3[](
    vec3(0.90, 0.25, 0.20), vec3(0.20, 0.75, 0.30), vec3(0.20, 0.40, 0.90),
    vec3(0.95, 0.80, 0.20), vec3(0.70, 0.30, 0.80), vec3(0.20, 0.80, 0.80));

void main() {
    int face = gl_VertexIndex / 6;
    float a = push.time * 1.1;
    float b = push.time * 0.7;
    mat3 yaw = mat3(cos(a), 0.0, -sin(a), 0.0, 1.0, 0.0, sin(a), 0.0, cos(a));
    mat3 pitch = mat3(1.0, 0.0, 0.0, 0.0, cos(b), sin(b), 0.0, -sin(b), cos(b));
    mat3 rot = pitch * yaw;
    vec3 p = rot * corners[indices[gl_VertexIndex]] + vec3(0.0, 0.0, -4.5);
    // Perspective, 60 degree vertical field of view, Vulkan clip space (y down, z in [0,1]).
    const float f = 1.7320508;  // 1 / tan(30 degrees)
    const float near = 0.1, far = 20.0;
    gl_Position = vec4(p.x * f / push.aspect, -p.y * f, p.z * far / (near - far) + far * near / (near - far), -p.z);
    color = colors[face];
    normal = rot * normals[face];
}

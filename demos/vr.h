/* venus-repro demo support: device set-up, offscreen targets, read-back,
 * checksums and the result lines the driver parses.
 *
 * Output contract (driver/protocol.py):
 *   VENUS-RESULT {"demo": …, "outcome": "pass"|"error", …}   one JSON object per line
 *   VK err <VkResult> @ <call>                                 on any Vulkan failure,
 *                                                              the format the user's demos print
 * The same source is built for the guest (aarch64, Venus) and for the host
 * (lavapipe), so the two checksums can be compared bit for bit.
 */
#ifndef VR_H
#define VR_H

#include <stdint.h>
#include <stdio.h>
#include <vulkan/vulkan.h>

struct vr_options {
    const char *out_dir; /* where the checked frame goes (raw RGBA), or NULL */
    uint32_t width, height;
    uint32_t frames;
    /* --invalid-usage: one call the validation layer must report (a buffer with no usage
     * bits: VUID-VkBufferCreateInfo-None-09500); the checker's own test. */
    int invalid_usage;
};

struct vr {
    const char *demo;
    struct vr_options opt;
    VkInstance instance;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t queue_family;
    VkCommandPool pool;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem;
    char driver_name[VK_MAX_DRIVER_NAME_SIZE];
    char driver_info[VK_MAX_DRIVER_INFO_SIZE];
};

/* A Vulkan call that must succeed: on failure print both result lines and exit. */
#define VR_CHECK(vr, call)                                                                     \
    do {                                                                                       \
        VkResult vr_res_ = (call);                                                             \
        if (vr_res_ != VK_SUCCESS)                                                             \
            vr_fail((vr), vr_res_, #call);                                                     \
    } while (0)

void vr_parse_args(struct vr *vr, const char *demo, int argc, char **argv, uint32_t width,
                   uint32_t height, uint32_t frames);
void vr_fail(struct vr *vr, VkResult res, const char *call) __attribute__((noreturn));
/* A failed system call (open, ioctl, mmap): print the result line and exit. */
void vr_fail_errno(struct vr *vr, const char *call) __attribute__((noreturn));
/* The driver does not offer what this demo needs: a result, not a failure (exit 77). */
#define VR_EXIT_UNSUPPORTED 77
void vr_unsupported(struct vr *vr, const char *reason) __attribute__((noreturn));
void vr_init(struct vr *vr, const char *const *device_extensions, uint32_t n_device_extensions);
void vr_destroy(struct vr *vr);

uint32_t vr_memory_type(struct vr *vr, uint32_t type_bits, VkMemoryPropertyFlags want);
VkDeviceMemory vr_alloc(struct vr *vr, VkMemoryRequirements req, VkMemoryPropertyFlags want);
VkShaderModule vr_shader(struct vr *vr, const uint32_t *code, size_t size);

/* A 2D image with its own memory (props) bound; mem receives the allocation. */
VkImage vr_image(struct vr *vr, uint32_t width, uint32_t height, VkFormat format,
                 VkImageTiling tiling, VkImageUsageFlags usage, VkMemoryPropertyFlags props,
                 VkDeviceMemory *mem);
VkImageView vr_image_view(struct vr *vr, VkImage image, VkFormat format, VkImageAspectFlags aspect);
/* A one-subpass render pass: colour cleared and stored (left in final_layout),
 * plus a cleared depth attachment unless depth_format is VK_FORMAT_UNDEFINED.
 * Whatever follows (a copy, a host read) waits for the colour writes. */
VkRenderPass vr_render_pass(struct vr *vr, VkFormat color_format, VkFormat depth_format,
                            VkImageLayout final_layout);
/* A graphics pipeline for vertex-buffer-free draws (positions from gl_VertexIndex),
 * full-target viewport, no culling, optional depth test. */
VkPipeline vr_pipeline(struct vr *vr, VkRenderPass pass, VkPipelineLayout layout, VkShaderModule vs,
                       VkShaderModule fs, int depth_test);
/* Record: copy a colour image (TRANSFER_SRC_OPTIMAL) into a buffer, visible to the host after. */
void vr_cmd_copy_to_host(struct vr *vr, VkCommandBuffer cmd, VkImage image, VkBuffer buffer);
/* A buffer with its own memory (props) bound. */
VkBuffer vr_buffer(struct vr *vr, VkDeviceSize size, VkBufferUsageFlags usage,
                   VkMemoryPropertyFlags props, VkDeviceMemory *mem);
double vr_now(void);

/* 64-bit FNV-1a over the pixels, row by row (row_pitch may exceed width*4). */
uint64_t vr_fnv1a(const uint8_t *pixels, uint32_t width, uint32_t height, size_t row_pitch);
/* Write the frame as raw RGBA to <out_dir>/<demo>.rgba; returns the path or NULL. */
const char *vr_save_frame(struct vr *vr, const uint8_t *pixels, size_t row_pitch);
/* Print the VENUS-RESULT line of a passing run. */
void vr_report(struct vr *vr, uint64_t checksum, double fps, const char *frame_path,
               const char *extra_json);

#endif

/* The rotating cube shared by vkcube_anim and vkcube_zerocopy: render pass with
 * colour + depth, pipeline, per-slot targets, and a frame loop that keeps
 * several frames in flight (one fence per slot, no wait per frame). */
#ifndef CUBE_H
#define CUBE_H

#include "vr.h"

#define CUBE_FORMAT VK_FORMAT_R8G8B8A8_UNORM
#define CUBE_DEPTH_FORMAT VK_FORMAT_D32_SFLOAT
#define CUBE_MAX_SLOTS 4
/* Animation time of frame i is i / 60 s; the checked frame is at 1 s, whatever
 * the number of frames, so guest and host checksums are comparable. */
#define CUBE_TIMESTEP (1.0f / 60.0f)
#define CUBE_CHECK_TIME 1.0f

struct cube {
    struct vr *vr;
    VkRenderPass pass;
    VkPipelineLayout layout;
    VkPipeline pipeline;
    VkShaderModule vs, fs;
};

/* One render target: a colour image (memory owned by the caller) + depth. */
struct cube_target {
    VkImage color;
    VkImageView color_view;
    VkImage depth;
    VkDeviceMemory depth_mem;
    VkImageView depth_view;
    VkFramebuffer fb;
};

/* Per-frame work appended after the render pass (a copy, a barrier), or NULL. */
typedef void (*cube_after_fn)(VkCommandBuffer cmd, uint32_t slot, void *user);

/* final_layout: TRANSFER_SRC_OPTIMAL to copy from, GENERAL to read in place. */
void cube_init(struct cube *c, struct vr *vr, VkImageLayout final_layout);
void cube_target_init(struct cube *c, struct cube_target *t, VkImage color);
void cube_target_destroy(struct cube *c, struct cube_target *t);
void cube_destroy(struct cube *c);

/* Render vr->opt.frames frames round-robin into n targets, n frames in flight.
 * Returns frames per second. */
double cube_run(struct cube *c, struct cube_target *targets, uint32_t n, cube_after_fn after,
                void *user);
/* Render the checked frame (CUBE_CHECK_TIME) into target `slot` and wait for it. */
void cube_render_check(struct cube *c, struct cube_target *targets, uint32_t slot,
                       cube_after_fn after, void *user);

#endif

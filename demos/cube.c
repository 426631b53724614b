/* The rotating cube; see cube.h. */
#include "cube.h"

#include "cube.frag.h"
#include "cube.vert.h"

struct push {
    float time;
    float aspect;
};

void cube_init(struct cube *c, struct vr *vr, VkImageLayout final_layout) {
    c->vr = vr;
    VkDevice dev = vr->device;
    c->pass = vr_render_pass(vr, CUBE_FORMAT, CUBE_DEPTH_FORMAT, final_layout);

    c->vs = vr_shader(vr, cube_vert, sizeof(cube_vert));
    c->fs = vr_shader(vr, cube_frag, sizeof(cube_frag));
    VkPushConstantRange range = {VK_SHADER_STAGE_VERTEX_BIT, 0, sizeof(struct push)};
    VkPipelineLayoutCreateInfo plci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &range,
    };
    VR_CHECK(vr, vkCreatePipelineLayout(dev, &plci, NULL, &c->layout));

    c->pipeline = vr_pipeline(vr, c->pass, c->layout, c->vs, c->fs, 1);
}

void cube_target_init(struct cube *c, struct cube_target *t, VkImage color) {
    struct vr *vr = c->vr;
    t->color = color;
    t->color_view = vr_image_view(vr, color, CUBE_FORMAT, VK_IMAGE_ASPECT_COLOR_BIT);
    t->depth = vr_image(vr, vr->opt.width, vr->opt.height, CUBE_DEPTH_FORMAT, VK_IMAGE_TILING_OPTIMAL,
                        VK_IMAGE_USAGE_DEPTH_STENCIL_ATTACHMENT_BIT,
                        VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &t->depth_mem);
    t->depth_view = vr_image_view(vr, t->depth, CUBE_DEPTH_FORMAT, VK_IMAGE_ASPECT_DEPTH_BIT);
    VkImageView views[2] = {t->color_view, t->depth_view};
    VkFramebufferCreateInfo fci = {
        .sType = VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO,
        .renderPass = c->pass,
        .attachmentCount = 2,
        .pAttachments = views,
        .width = vr->opt.width,
        .height = vr->opt.height,
        .layers = 1,
    };
    VR_CHECK(vr, vkCreateFramebuffer(vr->device, &fci, NULL, &t->fb));
}

void cube_target_destroy(struct cube *c, struct cube_target *t) {
    VkDevice dev = c->vr->device;
    vkDestroyFramebuffer(dev, t->fb, NULL);
    vkDestroyImageView(dev, t->depth_view, NULL);
    vkDestroyImage(dev, t->depth, NULL);
    vkFreeMemory(dev, t->depth_mem, NULL);
    vkDestroyImageView(dev, t->color_view, NULL);
}

void cube_destroy(struct cube *c) {
    VkDevice dev = c->vr->device;
    vkDestroyPipeline(dev, c->pipeline, NULL);
    vkDestroyPipelineLayout(dev, c->layout, NULL);
    vkDestroyShaderModule(dev, c->vs, NULL);
    vkDestroyShaderModule(dev, c->fs, NULL);
    vkDestroyRenderPass(dev, c->pass, NULL);
}

static void record(struct cube *c, VkCommandBuffer cmd, struct cube_target *t, float time,
                   uint32_t slot, cube_after_fn after, void *user) {
    struct vr *vr = c->vr;
    VkCommandBufferBeginInfo begin = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VR_CHECK(vr, vkBeginCommandBuffer(cmd, &begin));
    VkClearValue clear[2] = {{.color = {{0.05f, 0.05f, 0.08f, 1.0f}}}, {.depthStencil = {1.0f, 0}}};
    VkRenderPassBeginInfo rpbi = {
        .sType = VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO, .renderPass = c->pass,
        .framebuffer = t->fb, .renderArea = {{0, 0}, {vr->opt.width, vr->opt.height}},
        .clearValueCount = 2, .pClearValues = clear};
    vkCmdBeginRenderPass(cmd, &rpbi, VK_SUBPASS_CONTENTS_INLINE);
    vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_GRAPHICS, c->pipeline);
    struct push push = {time, (float)vr->opt.width / (float)vr->opt.height};
    vkCmdPushConstants(cmd, c->layout, VK_SHADER_STAGE_VERTEX_BIT, 0, sizeof(push), &push);
    vkCmdDraw(cmd, 36, 1, 0, 0);
    vkCmdEndRenderPass(cmd);
    if (after)
        after(cmd, slot, user);
    VR_CHECK(vr, vkEndCommandBuffer(cmd));
}

static void frame_loop(struct cube *c, struct cube_target *targets, uint32_t n, uint32_t frames,
                       float fixed_time, uint32_t fixed_slot, cube_after_fn after, void *user) {
    struct vr *vr = c->vr;
    VkDevice dev = vr->device;
    VkCommandBuffer cmds[CUBE_MAX_SLOTS];
    VkFence fences[CUBE_MAX_SLOTS];
    VkCommandBufferAllocateInfo cbai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = vr->pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = n};
    VR_CHECK(vr, vkAllocateCommandBuffers(dev, &cbai, cmds));
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO,
                             .flags = VK_FENCE_CREATE_SIGNALED_BIT};
    for (uint32_t s = 0; s < n; s++)
        VR_CHECK(vr, vkCreateFence(dev, &fci, NULL, &fences[s]));
    for (uint32_t i = 0; i < frames; i++) {
        /* Wait only for the frame that last used this slot, n frames ago. */
        uint32_t slot = fixed_time >= 0 ? fixed_slot : i % n;
        VR_CHECK(vr, vkWaitForFences(dev, 1, &fences[slot], VK_TRUE, UINT64_MAX));
        VR_CHECK(vr, vkResetFences(dev, 1, &fences[slot]));
        float time = fixed_time >= 0 ? fixed_time : (float)i * CUBE_TIMESTEP;
        record(c, cmds[slot], &targets[slot], time, slot, after, user);
        VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                           .pCommandBuffers = &cmds[slot]};
        VR_CHECK(vr, vkQueueSubmit(vr->queue, 1, &si, fences[slot]));
    }
    VR_CHECK(vr, vkWaitForFences(dev, n, fences, VK_TRUE, UINT64_MAX));
    for (uint32_t s = 0; s < n; s++)
        vkDestroyFence(dev, fences[s], NULL);
    vkFreeCommandBuffers(dev, vr->pool, n, cmds);
}

double cube_run(struct cube *c, struct cube_target *targets, uint32_t n, cube_after_fn after,
                void *user) {
    double t0 = vr_now();
    frame_loop(c, targets, n, c->vr->opt.frames, -1.0f, 0, after, user);
    return c->vr->opt.frames / (vr_now() - t0);
}

void cube_render_check(struct cube *c, struct cube_target *targets, uint32_t slot,
                       cube_after_fn after, void *user) {
    frame_loop(c, targets, slot + 1, 1, CUBE_CHECK_TIME, slot, after, user);
}

/* test_tri: the smallest Venus smoke test.
 *
 * Renders a vertex-coloured triangle offscreen (no WSI: none works reliably
 * under Venus headless), copies the image into a host-visible buffer, and
 * reports the FNV-1a checksum of the pixels and the frame rate over N frames.
 */
#include "vr.h"

#include <stdlib.h>
#include <string.h>

#include "tri.frag.h"
#include "tri.vert.h"

#define FORMAT VK_FORMAT_R8G8B8A8_UNORM

int main(int argc, char **argv) {
    struct vr vr;
    vr_parse_args(&vr, "test_tri", argc, argv, 256, 256, 100);
    vr_init(&vr, NULL, 0);
    VkDevice dev = vr.device;
    const uint32_t w = vr.opt.width, h = vr.opt.height;

    /* Colour target (device-local, optimal tiling) and read-back buffer (host-visible). */
    VkDeviceMemory imem, bmem;
    VkImage image = vr_image(&vr, w, h, FORMAT, VK_IMAGE_TILING_OPTIMAL,
                             VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT,
                             VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &imem);
    VkImageView view = vr_image_view(&vr, image, FORMAT, VK_IMAGE_ASPECT_COLOR_BIT);
    VkBuffer buffer = vr_buffer(
        &vr, (VkDeviceSize)w * h * 4, VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, &bmem);

    /* Render pass: clear, draw, leave the image ready to copy from. */
    VkRenderPass pass =
        vr_render_pass(&vr, FORMAT, VK_FORMAT_UNDEFINED, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL);
    VkFramebufferCreateInfo fci = {
        .sType = VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO,
        .renderPass = pass,
        .attachmentCount = 1,
        .pAttachments = &view,
        .width = w,
        .height = h,
        .layers = 1,
    };
    VkFramebuffer fb;
    VR_CHECK(&vr, vkCreateFramebuffer(dev, &fci, NULL, &fb));

    /* Pipeline. */
    VkShaderModule vs = vr_shader(&vr, tri_vert, sizeof(tri_vert));
    VkShaderModule fs = vr_shader(&vr, tri_frag, sizeof(tri_frag));
    VkPipelineLayoutCreateInfo plci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
    VkPipelineLayout layout;
    VR_CHECK(&vr, vkCreatePipelineLayout(dev, &plci, NULL, &layout));
    VkPipeline pipeline = vr_pipeline(&vr, pass, layout, vs, fs, 0);

    /* One command buffer: draw, then copy to the read-back buffer. */
    VkCommandBufferAllocateInfo cbai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = vr.pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1};
    VkCommandBuffer cmd;
    VR_CHECK(&vr, vkAllocateCommandBuffers(dev, &cbai, &cmd));
    VkCommandBufferBeginInfo begin = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    VR_CHECK(&vr, vkBeginCommandBuffer(cmd, &begin));
    VkClearValue clear = {.color = {{0.05f, 0.05f, 0.08f, 1.0f}}};
    VkRenderPassBeginInfo rpbi = {
        .sType = VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO, .renderPass = pass, .framebuffer = fb,
        .renderArea = {{0, 0}, {w, h}}, .clearValueCount = 1, .pClearValues = &clear};
    vkCmdBeginRenderPass(cmd, &rpbi, VK_SUBPASS_CONTENTS_INLINE);
    vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline);
    vkCmdDraw(cmd, 3, 1, 0, 0);
    vkCmdEndRenderPass(cmd);
    vr_cmd_copy_to_host(&vr, cmd, image, buffer);
    VR_CHECK(&vr, vkEndCommandBuffer(cmd));

    /* The smoke test waits for each frame: simple, and it exercises the fence path. */
    VkFenceCreateInfo fnci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VkFence fence;
    VR_CHECK(&vr, vkCreateFence(dev, &fnci, NULL, &fence));
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                       .pCommandBuffers = &cmd};
    double t0 = vr_now();
    for (uint32_t i = 0; i < vr.opt.frames; i++) {
        VR_CHECK(&vr, vkQueueSubmit(vr.queue, 1, &si, fence));
        VR_CHECK(&vr, vkWaitForFences(dev, 1, &fence, VK_TRUE, UINT64_MAX));
        VR_CHECK(&vr, vkResetFences(dev, 1, &fence));
    }
    double fps = vr.opt.frames / (vr_now() - t0);

    void *pixels;
    VR_CHECK(&vr, vkMapMemory(dev, bmem, 0, VK_WHOLE_SIZE, 0, &pixels));
    uint64_t sum = vr_fnv1a(pixels, w, h, (size_t)w * 4);
    const char *frame = vr_save_frame(&vr, pixels, (size_t)w * 4);
    vkUnmapMemory(dev, bmem);
    vr_report(&vr, sum, fps, frame, NULL);

    vkDestroyFence(dev, fence, NULL);
    vkDestroyPipeline(dev, pipeline, NULL);
    vkDestroyPipelineLayout(dev, layout, NULL);
    vkDestroyShaderModule(dev, vs, NULL);
    vkDestroyShaderModule(dev, fs, NULL);
    vkDestroyFramebuffer(dev, fb, NULL);
    vkDestroyRenderPass(dev, pass, NULL);
    vkDestroyBuffer(dev, buffer, NULL);
    vkFreeMemory(dev, bmem, NULL);
    vkDestroyImageView(dev, view, NULL);
    vkDestroyImage(dev, image, NULL);
    vkFreeMemory(dev, imem, NULL);
    vr_destroy(&vr);
    return 0;
}

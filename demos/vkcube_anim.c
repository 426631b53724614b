/* vkcube_anim: the animated cube whose frame rate users track.
 *
 * A lit, vertex-coloured cube with a depth buffer, rendered offscreen at
 * 1280x800 (the seed's display) for N frames with three frames in flight
 * (one fence per slot; never one wait per frame). FPS is measured over the N
 * frames; the checked frame is rendered at the fixed animation time of 1 s and
 * copied to a host-visible buffer, so its checksum does not depend on N.
 */
#include "cube.h"

#define SLOTS 3

struct readback {
    struct vr *vr;
    VkImage image;
    VkBuffer buffer;
};

static void copy_out(VkCommandBuffer cmd, uint32_t slot, void *user) {
    struct readback *rb = user;
    (void)slot;
    vr_cmd_copy_to_host(rb->vr, cmd, rb->image, rb->buffer);
}

int main(int argc, char **argv) {
    struct vr vr;
    vr_parse_args(&vr, "vkcube_anim", argc, argv, 1280, 800, 200);
    vr_init(&vr, NULL, 0);
    const uint32_t w = vr.opt.width, h = vr.opt.height;

    struct cube cube;
    cube_init(&cube, &vr, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL);
    struct cube_target targets[SLOTS];
    VkDeviceMemory color_mem[SLOTS];
    for (uint32_t s = 0; s < SLOTS; s++) {
        VkImage color = vr_image(&vr, w, h, CUBE_FORMAT, VK_IMAGE_TILING_OPTIMAL,
                                 VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT,
                                 VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &color_mem[s]);
        cube_target_init(&cube, &targets[s], color);
    }

    double fps = cube_run(&cube, targets, SLOTS, NULL, NULL);

    VkDeviceMemory bmem;
    struct readback rb = {&vr, targets[0].color,
                          vr_buffer(&vr, (VkDeviceSize)w * h * 4, VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                    VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                        VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                    &bmem)};
    cube_render_check(&cube, targets, 0, copy_out, &rb);
    void *pixels;
    VR_CHECK(&vr, vkMapMemory(vr.device, bmem, 0, VK_WHOLE_SIZE, 0, &pixels));
    uint64_t sum = vr_fnv1a(pixels, w, h, (size_t)w * 4);
    const char *frame = vr_save_frame(&vr, pixels, (size_t)w * 4);
    vkUnmapMemory(vr.device, bmem);
    vr_report(&vr, sum, fps, frame, "\"frames_in_flight\": 3, \"check_time\": 1.0");

    vkDestroyBuffer(vr.device, rb.buffer, NULL);
    vkFreeMemory(vr.device, bmem, NULL);
    for (uint32_t s = 0; s < SLOTS; s++) {
        cube_target_destroy(&cube, &targets[s]);
        vkDestroyImage(vr.device, targets[s].color, NULL);
        vkFreeMemory(vr.device, color_mem[s], NULL);
    }
    cube_destroy(&cube);
    vr_destroy(&vr);
    return 0;
}

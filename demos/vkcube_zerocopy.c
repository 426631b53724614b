/* vkcube_zerocopy: the cube rendered straight into memory the CPU reads in place.
 *
 * --alloc picks where the render target's memory comes from:
 *
 *   vulkan      Vulkan-allocated LINEAR image in HOST_VISIBLE memory. Under Venus
 *               this memory is a host blob mapped into the guest through
 *               virtio-gpu's hostmem window (RESOURCE_MAP_BLOB): the host driver
 *               renders into it and the guest CPU reads the same pages through
 *               vkMapMemory, no copy. WORKS on Debian trixie (virglrenderer 1.1,
 *               lavapipe host).
 *   copyback    the comparison: OPTIMAL image, and every frame copied into a
 *               host-visible buffer (what a copy-back presentation path does).
 *   guest-blob  allocated outside Vulkan by the guest: a virtio-gpu blob
 *               (DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB, BLOB_MEM_GUEST,
 *               mappable + shareable), exported as a dma-buf (PRIME) and imported
 *               with VK_KHR_external_memory_fd + VK_EXT_external_memory_dma_buf;
 *               the Venus driver turns that into VkImportMemoryResourceInfoMESA
 *               on the host. The CPU reads through DRM_IOCTL_VIRTGPU_MAP.
 *   dumb        allocated outside Vulkan as a KMS dumb buffer on /dev/dri/card0,
 *               exported and imported the same way; the CPU reads through
 *               DRM_IOCTL_MODE_MAP_DUMB.
 *
 * What happens on Debian trixie here (measured, see the project's notes): the
 * Venus device advertises neither VK_KHR_external_memory_fd nor
 * VK_EXT_external_memory_dma_buf, so guest-blob and dumb fail at vkCreateDevice
 * with VK_ERROR_EXTENSION_NOT_PRESENT (-7), before any import is tried. Why:
 * Mesa 25.0's Venus offers fd/dma-buf import only if the host device has
 * VK_EXT_external_memory_dma_buf, VK_EXT_queue_family_foreign and
 * VK_EXT_image_drm_format_modifier (vn_physical_device_get_external_memory_support);
 * host lavapipe 25.0.7 has the first two but not the modifier extension. With a
 * host driver that has all three, the import itself is the next hurdle
 * (VK_ERROR_INVALID_EXTERNAL_HANDLE for SHM-backed resources, the bug class of
 * the fd-fallback patch).
 */
#define _GNU_SOURCE
#include "cube.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <drm/drm.h>
#include <drm/drm_mode.h>
#include <drm/virtgpu_drm.h>

#define SLOTS 3

enum alloc { ALLOC_VULKAN, ALLOC_COPYBACK, ALLOC_GUEST_BLOB, ALLOC_DUMB };
static const char *const alloc_names[] = {"vulkan", "copyback", "guest-blob", "dumb"};

struct slot_memory {
    VkDeviceMemory mem;
    VkBuffer buffer;         /* copyback: the host-visible copy */
    VkDeviceMemory buffer_mem;
    uint8_t *cpu;            /* where the CPU reads the pixels */
    size_t row_pitch;
    size_t cpu_size;
    int drm_fd;              /* guest-blob/dumb: the device the buffer lives on */
};

struct state {
    struct vr *vr;
    enum alloc alloc;
    struct cube_target targets[SLOTS];
    struct slot_memory slots[SLOTS];
};

/* --- allocation outside Vulkan ------------------------------------------------------ */

static int open_dri(struct vr *vr, const char *path) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        vr_fail_errno(vr, path);
    return fd;
}

/* Returns a dma-buf fd for a new buffer of `size` bytes; fills the CPU mapping. */
static int alloc_outside(struct state *st, struct slot_memory *sm, size_t size) {
    struct vr *vr = st->vr;
    uint32_t handle;
    uint64_t offset;
    if (st->alloc == ALLOC_GUEST_BLOB) {
        sm->drm_fd = open_dri(vr, "/dev/dri/renderD128");
        struct drm_virtgpu_resource_create_blob blob = {
            .blob_mem = VIRTGPU_BLOB_MEM_GUEST,
            .blob_flags = VIRTGPU_BLOB_FLAG_USE_MAPPABLE | VIRTGPU_BLOB_FLAG_USE_SHAREABLE,
            .size = size,
        };
        if (ioctl(sm->drm_fd, DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB, &blob))
            vr_fail_errno(vr, "DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB");
        handle = blob.bo_handle;
        struct drm_virtgpu_map map = {.handle = handle};
        if (ioctl(sm->drm_fd, DRM_IOCTL_VIRTGPU_MAP, &map))
            vr_fail_errno(vr, "DRM_IOCTL_VIRTGPU_MAP");
        offset = map.offset;
    } else {
        sm->drm_fd = open_dri(vr, "/dev/dri/card0");
        struct drm_mode_create_dumb dumb = {
            .width = vr->opt.width, .height = vr->opt.height, .bpp = 32};
        if (ioctl(sm->drm_fd, DRM_IOCTL_MODE_CREATE_DUMB, &dumb))
            vr_fail_errno(vr, "DRM_IOCTL_MODE_CREATE_DUMB");
        handle = dumb.handle;
        size = dumb.size;
        struct drm_mode_map_dumb map = {.handle = handle};
        if (ioctl(sm->drm_fd, DRM_IOCTL_MODE_MAP_DUMB, &map))
            vr_fail_errno(vr, "DRM_IOCTL_MODE_MAP_DUMB");
        offset = map.offset;
    }
    struct drm_prime_handle prime = {.handle = handle, .flags = DRM_CLOEXEC | DRM_RDWR};
    if (ioctl(sm->drm_fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &prime))
        vr_fail_errno(vr, "DRM_IOCTL_PRIME_HANDLE_TO_FD");
    sm->cpu = mmap(NULL, size, PROT_READ, MAP_SHARED, sm->drm_fd, (off_t)offset);
    if (sm->cpu == MAP_FAILED)
        vr_fail_errno(vr, "mmap");
    sm->cpu_size = size;
    return prime.fd;
}

/* --- targets ------------------------------------------------------------------------- */

/* Rendering into a LINEAR image is optional in Vulkan: check the driver offers it before
 * doing it. On an NVIDIA H200 the unchecked render gave VK_ERROR_DEVICE_LOST and once left
 * the GPU hung for every later process. Unsupported is a clear outcome instead:
 * VK_ERROR_FORMAT_NOT_SUPPORTED at the query that said so. */
static void require_linear_target(struct vr *vr, const VkImageCreateInfo *ici) {
    VkFormatProperties fp;
    vkGetPhysicalDeviceFormatProperties(vr->phys, ici->format, &fp);
    /* NVIDIA's driver offers none: rendering into one anyway lost the device (GPU.md). */
    if (!(fp.linearTilingFeatures & VK_FORMAT_FEATURE_COLOR_ATTACHMENT_BIT))
        vr_unsupported(vr, "the driver offers no LINEAR color attachment in this format (linearTilingFeatures)");
    VkImageFormatProperties ifp;
    VkResult res = vkGetPhysicalDeviceImageFormatProperties(vr->phys, ici->format, ici->imageType, ici->tiling,
                                                            ici->usage, 0, &ifp);
    if (res == VK_ERROR_FORMAT_NOT_SUPPORTED)
        vr_unsupported(vr, "the driver offers no LINEAR color attachment image in this format");
    VR_CHECK(vr, res);
    if (ifp.maxExtent.width < ici->extent.width || ifp.maxExtent.height < ici->extent.height)
        vr_unsupported(vr, "the driver's LINEAR color attachments are smaller than the frame");
}

static VkImage linear_image(struct vr *vr, int external) {
    VkExternalMemoryImageCreateInfo ext = {
        .sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_IMAGE_CREATE_INFO,
        .handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT,
    };
    VkImageCreateInfo ici = {
        .sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO,
        .pNext = external ? &ext : NULL,
        .imageType = VK_IMAGE_TYPE_2D,
        .format = CUBE_FORMAT,
        .extent = {vr->opt.width, vr->opt.height, 1},
        .mipLevels = 1,
        .arrayLayers = 1,
        .samples = VK_SAMPLE_COUNT_1_BIT,
        .tiling = VK_IMAGE_TILING_LINEAR,
        .usage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT,
        .initialLayout = VK_IMAGE_LAYOUT_UNDEFINED,
    };
    require_linear_target(vr, &ici);
    VkImage image;
    VR_CHECK(vr, vkCreateImage(vr->device, &ici, NULL, &image));
    return image;
}

static VkImage make_target(struct state *st, struct slot_memory *sm) {
    struct vr *vr = st->vr;
    const uint32_t w = vr->opt.width, h = vr->opt.height;
    const VkMemoryPropertyFlags host =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    if (st->alloc == ALLOC_COPYBACK) {
        VkImage image = vr_image(vr, w, h, CUBE_FORMAT, VK_IMAGE_TILING_OPTIMAL,
                                 VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT,
                                 VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &sm->mem);
        sm->buffer = vr_buffer(vr, (VkDeviceSize)w * h * 4, VK_BUFFER_USAGE_TRANSFER_DST_BIT, host,
                               &sm->buffer_mem);
        VR_CHECK(vr, vkMapMemory(vr->device, sm->buffer_mem, 0, VK_WHOLE_SIZE, 0, (void **)&sm->cpu));
        sm->row_pitch = (size_t)w * 4;
        return image;
    }
    VkImage image = linear_image(vr, st->alloc != ALLOC_VULKAN);
    VkMemoryRequirements req;
    vkGetImageMemoryRequirements(vr->device, image, &req);
    if (st->alloc == ALLOC_VULKAN) {
        sm->mem = vr_alloc(vr, req, host);
        VR_CHECK(vr, vkMapMemory(vr->device, sm->mem, 0, VK_WHOLE_SIZE, 0, (void **)&sm->cpu));
    } else {
        int fd = alloc_outside(st, sm, req.size);
        PFN_vkGetMemoryFdPropertiesKHR get_props = (PFN_vkGetMemoryFdPropertiesKHR)
            vkGetDeviceProcAddr(vr->device, "vkGetMemoryFdPropertiesKHR");
        VkMemoryFdPropertiesKHR props = {.sType = VK_STRUCTURE_TYPE_MEMORY_FD_PROPERTIES_KHR};
        VR_CHECK(vr, get_props(vr->device, VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT, fd, &props));
        VkMemoryDedicatedAllocateInfo dedicated = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO, .image = image};
        VkImportMemoryFdInfoKHR import = {
            .sType = VK_STRUCTURE_TYPE_IMPORT_MEMORY_FD_INFO_KHR, .pNext = &dedicated,
            .handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT, .fd = fd};
        VkMemoryAllocateInfo mai = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .pNext = &import,
            .allocationSize = req.size,
            .memoryTypeIndex = vr_memory_type(vr, req.memoryTypeBits & props.memoryTypeBits, 0)};
        /* Venus sends this to the host as VkImportMemoryResourceInfoMESA. */
        VR_CHECK(vr, vkAllocateMemory(vr->device, &mai, NULL, &sm->mem));
    }
    VR_CHECK(vr, vkBindImageMemory(vr->device, image, sm->mem, 0));
    VkImageSubresource sub = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0};
    VkSubresourceLayout layout;
    vkGetImageSubresourceLayout(vr->device, image, &sub, &layout);
    sm->row_pitch = layout.rowPitch;
    sm->cpu += layout.offset;
    return image;
}

/* --- per-frame work ------------------------------------------------------------------ */

static void after_frame(VkCommandBuffer cmd, uint32_t slot, void *user) {
    struct state *st = user;
    struct vr *vr = st->vr;
    if (st->alloc == ALLOC_COPYBACK) {
        vr_cmd_copy_to_host(vr, cmd, st->targets[slot].color, st->slots[slot].buffer);
    } else {
        /* The CPU reads the rendered image in place: make the writes visible to it. */
        VkImageMemoryBarrier b = {
            .sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
            .oldLayout = VK_IMAGE_LAYOUT_GENERAL, .newLayout = VK_IMAGE_LAYOUT_GENERAL,
            .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
            .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
            .image = st->targets[slot].color,
            .subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1}};
        vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
                             VK_PIPELINE_STAGE_HOST_BIT, 0, 0, NULL, 0, NULL, 1, &b);
    }
}

static enum alloc take_alloc_option(int *argc, char **argv) {
    enum alloc alloc = ALLOC_VULKAN;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--alloc") || i + 1 >= *argc)
            continue;
        int found = 0;
        for (unsigned a = 0; a < sizeof(alloc_names) / sizeof(*alloc_names); a++)
            if (!strcmp(argv[i + 1], alloc_names[a])) {
                alloc = (enum alloc)a;
                found = 1;
            }
        if (!found) {
            fprintf(stderr, "vkcube_zerocopy: --alloc vulkan|copyback|guest-blob|dumb\n");
            exit(64);
        }
        memmove(&argv[i], &argv[i + 2], (size_t)(*argc - i - 2) * sizeof(*argv));
        *argc -= 2;
        break;
    }
    return alloc;
}

int main(int argc, char **argv) {
    struct state st = {0};
    st.alloc = take_alloc_option(&argc, argv);
    struct vr vr;
    vr_parse_args(&vr, "vkcube_zerocopy", argc, argv, 1280, 800, 200);
    st.vr = &vr;
    static const char *const import_exts[] = {
        VK_KHR_EXTERNAL_MEMORY_FD_EXTENSION_NAME, VK_EXT_EXTERNAL_MEMORY_DMA_BUF_EXTENSION_NAME};
    int outside = st.alloc == ALLOC_GUEST_BLOB || st.alloc == ALLOC_DUMB;
    vr_init(&vr, outside ? import_exts : NULL, outside ? 2 : 0);

    struct cube cube;
    cube_init(&cube, &vr, st.alloc == ALLOC_COPYBACK ? VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL
                                                     : VK_IMAGE_LAYOUT_GENERAL);
    for (uint32_t s = 0; s < SLOTS; s++)
        cube_target_init(&cube, &st.targets[s], make_target(&st, &st.slots[s]));

    double fps = cube_run(&cube, st.targets, SLOTS, after_frame, &st);
    cube_render_check(&cube, st.targets, 0, after_frame, &st);

    struct slot_memory *sm = &st.slots[0];
    uint64_t sum = vr_fnv1a(sm->cpu, vr.opt.width, vr.opt.height, sm->row_pitch);
    const char *frame = vr_save_frame(&vr, sm->cpu, sm->row_pitch);
    char extra[128];
    snprintf(extra, sizeof(extra), "\"alloc\": \"%s\", \"frames_in_flight\": %d, \"check_time\": 1.0",
             alloc_names[st.alloc], SLOTS);
    vr_report(&vr, sum, fps, frame, extra);

    for (uint32_t s = 0; s < SLOTS; s++) {
        cube_target_destroy(&cube, &st.targets[s]);
        vkDestroyImage(vr.device, st.targets[s].color, NULL);
        vkFreeMemory(vr.device, st.slots[s].mem, NULL);
        if (st.slots[s].buffer) {
            vkDestroyBuffer(vr.device, st.slots[s].buffer, NULL);
            vkFreeMemory(vr.device, st.slots[s].buffer_mem, NULL);
        }
        if (st.slots[s].drm_fd > 0)
            close(st.slots[s].drm_fd);
    }
    cube_destroy(&cube);
    vr_destroy(&vr);
    return 0;
}

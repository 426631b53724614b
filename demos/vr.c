/* venus-repro demo support; see vr.h for the output contract. */
#include "vr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void usage(const char *demo) {
    fprintf(stderr, "usage: %s [--out DIR] [--size WxH] [--frames N] [--invalid-usage]\n", demo);
    exit(64);
}

void vr_parse_args(struct vr *vr, const char *demo, int argc, char **argv, uint32_t width,
                   uint32_t height, uint32_t frames) {
    memset(vr, 0, sizeof(*vr));
    vr->demo = demo;
    vr->opt.width = width;
    vr->opt.height = height;
    vr->opt.frames = frames;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc)
            vr->opt.out_dir = argv[++i];
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            if (sscanf(argv[++i], "%ux%u", &vr->opt.width, &vr->opt.height) != 2)
                usage(demo);
        } else if (!strcmp(argv[i], "--frames") && i + 1 < argc)
            vr->opt.frames = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--invalid-usage"))
            vr->opt.invalid_usage = 1;
        else
            usage(demo);
    }
    if (!vr->opt.width || !vr->opt.height || !vr->opt.frames)
        usage(demo);
}

void vr_fail(struct vr *vr, VkResult res, const char *call) {
    /* "vkCreateInstance(&info, NULL, &x)" -> "vkCreateInstance" */
    char name[128];
    size_t n = strcspn(call, "( ");
    if (n >= sizeof(name))
        n = sizeof(name) - 1;
    memcpy(name, call, n);
    name[n] = 0;
    fflush(stdout);
    printf("VK err %d @ %s\n", (int)res, name);
    printf("VENUS-RESULT {\"demo\": ");
    json_string(stdout, vr->demo);
    printf(", \"outcome\": \"error\", \"vk_result\": %d, \"call\": ", (int)res);
    json_string(stdout, name);
    printf("}\n");
    fflush(stdout);
    exit(2);
}

void vr_fail_errno(struct vr *vr, const char *call) {
    int err = errno;
    fprintf(stderr, "%s: %s failed: %s\n", vr->demo, call, strerror(err));
    fflush(stdout);
    printf("VENUS-RESULT {\"demo\": ");
    json_string(stdout, vr->demo);
    printf(", \"outcome\": \"error\", \"errno\": %d, \"call\": ", err);
    json_string(stdout, call);
    printf("}\n");
    fflush(stdout);
    exit(3);
}

void vr_unsupported(struct vr *vr, const char *reason) {
    fflush(stdout);
    printf("VENUS-RESULT {\"demo\": ");
    json_string(stdout, vr->demo);
    printf(", \"outcome\": \"unsupported\", \"reason\": ");
    json_string(stdout, reason);
    printf(", \"device\": ");
    json_string(stdout, vr->props.deviceName);
    printf("}\n");
    fflush(stdout);
    exit(VR_EXIT_UNSUPPORTED);
}

void vr_init(struct vr *vr, const char *const *device_extensions, uint32_t n_device_extensions) {
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = vr->demo,
        .apiVersion = VK_API_VERSION_1_1,
    };
    VkInstanceCreateInfo ici = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
    };
    VR_CHECK(vr, vkCreateInstance(&ici, NULL, &vr->instance));

    uint32_t count = 1;
    VkResult res = vkEnumeratePhysicalDevices(vr->instance, &count, &vr->phys);
    if (res != VK_SUCCESS && res != VK_INCOMPLETE)
        vr_fail(vr, res, "vkEnumeratePhysicalDevices");
    if (count == 0)
        vr_fail(vr, VK_ERROR_INITIALIZATION_FAILED, "vkEnumeratePhysicalDevices");
    vkGetPhysicalDeviceProperties(vr->phys, &vr->props);
    vkGetPhysicalDeviceMemoryProperties(vr->phys, &vr->mem);
    if (vr->props.apiVersion >= VK_API_VERSION_1_2) {
        VkPhysicalDeviceDriverProperties drv = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
        VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                          .pNext = &drv};
        vkGetPhysicalDeviceProperties2(vr->phys, &p2);
        memcpy(vr->driver_name, drv.driverName, sizeof(vr->driver_name));
        memcpy(vr->driver_info, drv.driverInfo, sizeof(vr->driver_info));
    }

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(vr->phys, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    if (nq > 16)
        nq = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(vr->phys, &nq, qf);
    vr->queue_family = UINT32_MAX;
    for (uint32_t i = 0; i < nq; i++)
        if (qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT) {
            vr->queue_family = i;
            break;
        }
    if (vr->queue_family == UINT32_MAX)
        vr_fail(vr, VK_ERROR_FEATURE_NOT_PRESENT, "vkGetPhysicalDeviceQueueFamilyProperties");

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = vr->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
        .enabledExtensionCount = n_device_extensions,
        .ppEnabledExtensionNames = device_extensions,
    };
    VR_CHECK(vr, vkCreateDevice(vr->phys, &dci, NULL, &vr->device));
    vkGetDeviceQueue(vr->device, vr->queue_family, 0, &vr->queue);
    if (vr->opt.invalid_usage) {
        VkBufferCreateInfo bi = {
            .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
            .size = 64,
            .usage = 0, /* invalid: at least one usage bit is required */
            .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
        };
        VkBuffer buffer;
        if (vkCreateBuffer(vr->device, &bi, NULL, &buffer) == VK_SUCCESS)
            vkDestroyBuffer(vr->device, buffer, NULL);
    }
    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = vr->queue_family,
    };
    VR_CHECK(vr, vkCreateCommandPool(vr->device, &pci, NULL, &vr->pool));
}

void vr_destroy(struct vr *vr) {
    if (vr->device) {
        vkDeviceWaitIdle(vr->device);
        vkDestroyCommandPool(vr->device, vr->pool, NULL);
        vkDestroyDevice(vr->device, NULL);
    }
    if (vr->instance)
        vkDestroyInstance(vr->instance, NULL);
}

uint32_t vr_memory_type(struct vr *vr, uint32_t type_bits, VkMemoryPropertyFlags want) {
    for (uint32_t i = 0; i < vr->mem.memoryTypeCount; i++)
        if ((type_bits & (1u << i)) && (vr->mem.memoryTypes[i].propertyFlags & want) == want)
            return i;
    vr_fail(vr, VK_ERROR_FEATURE_NOT_PRESENT, "vr_memory_type");
}

VkDeviceMemory vr_alloc(struct vr *vr, VkMemoryRequirements req, VkMemoryPropertyFlags want) {
    VkMemoryAllocateInfo mai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = vr_memory_type(vr, req.memoryTypeBits, want),
    };
    VkDeviceMemory mem;
    VR_CHECK(vr, vkAllocateMemory(vr->device, &mai, NULL, &mem));
    return mem;
}

VkShaderModule vr_shader(struct vr *vr, const uint32_t *code, size_t size) {
    VkShaderModuleCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = size,
        .pCode = code,
    };
    VkShaderModule m;
    VR_CHECK(vr, vkCreateShaderModule(vr->device, &ci, NULL, &m));
    return m;
}

VkImage vr_image(struct vr *vr, uint32_t width, uint32_t height, VkFormat format,
                 VkImageTiling tiling, VkImageUsageFlags usage, VkMemoryPropertyFlags props,
                 VkDeviceMemory *mem) {
    VkImageCreateInfo ici = {
        .sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO,
        .imageType = VK_IMAGE_TYPE_2D,
        .format = format,
        .extent = {width, height, 1},
        .mipLevels = 1,
        .arrayLayers = 1,
        .samples = VK_SAMPLE_COUNT_1_BIT,
        .tiling = tiling,
        .usage = usage,
        .initialLayout = VK_IMAGE_LAYOUT_UNDEFINED,
    };
    VkImage image;
    VR_CHECK(vr, vkCreateImage(vr->device, &ici, NULL, &image));
    VkMemoryRequirements req;
    vkGetImageMemoryRequirements(vr->device, image, &req);
    *mem = vr_alloc(vr, req, props);
    VR_CHECK(vr, vkBindImageMemory(vr->device, image, *mem, 0));
    return image;
}

VkImageView vr_image_view(struct vr *vr, VkImage image, VkFormat format, VkImageAspectFlags aspect) {
    VkImageViewCreateInfo vci = {
        .sType = VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO,
        .image = image,
        .viewType = VK_IMAGE_VIEW_TYPE_2D,
        .format = format,
        .subresourceRange = {aspect, 0, 1, 0, 1},
    };
    VkImageView view;
    VR_CHECK(vr, vkCreateImageView(vr->device, &vci, NULL, &view));
    return view;
}

VkBuffer vr_buffer(struct vr *vr, VkDeviceSize size, VkBufferUsageFlags usage,
                   VkMemoryPropertyFlags props, VkDeviceMemory *mem) {
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = usage,
    };
    VkBuffer buffer;
    VR_CHECK(vr, vkCreateBuffer(vr->device, &bci, NULL, &buffer));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vr->device, buffer, &req);
    *mem = vr_alloc(vr, req, props);
    VR_CHECK(vr, vkBindBufferMemory(vr->device, buffer, *mem, 0));
    return buffer;
}

VkRenderPass vr_render_pass(struct vr *vr, VkFormat color_format, VkFormat depth_format,
                            VkImageLayout final_layout) {
    const int depth = depth_format != VK_FORMAT_UNDEFINED;
    VkAttachmentDescription atts[2] = {
        {
            .format = color_format,
            .samples = VK_SAMPLE_COUNT_1_BIT,
            .loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR,
            .storeOp = VK_ATTACHMENT_STORE_OP_STORE,
            .stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE,
            .stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE,
            .initialLayout = VK_IMAGE_LAYOUT_UNDEFINED,
            .finalLayout = final_layout,
        },
        {
            .format = depth_format,
            .samples = VK_SAMPLE_COUNT_1_BIT,
            .loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR,
            .storeOp = VK_ATTACHMENT_STORE_OP_DONT_CARE,
            .stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE,
            .stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE,
            .initialLayout = VK_IMAGE_LAYOUT_UNDEFINED,
            .finalLayout = VK_IMAGE_LAYOUT_DEPTH_STENCIL_ATTACHMENT_OPTIMAL,
        },
    };
    VkAttachmentReference color_ref = {0, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL};
    VkAttachmentReference depth_ref = {1, VK_IMAGE_LAYOUT_DEPTH_STENCIL_ATTACHMENT_OPTIMAL};
    VkSubpassDescription sub = {
        .pipelineBindPoint = VK_PIPELINE_BIND_POINT_GRAPHICS,
        .colorAttachmentCount = 1,
        .pColorAttachments = &color_ref,
        .pDepthStencilAttachment = depth ? &depth_ref : NULL,
    };
    VkSubpassDependency dep = {
        .srcSubpass = 0,
        .dstSubpass = VK_SUBPASS_EXTERNAL,
        .srcStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
        .dstStageMask = VK_PIPELINE_STAGE_TRANSFER_BIT,
        .srcAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT,
    };
    VkRenderPassCreateInfo rpci = {
        .sType = VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO,
        .attachmentCount = depth ? 2 : 1,
        .pAttachments = atts,
        .subpassCount = 1,
        .pSubpasses = &sub,
        .dependencyCount = 1,
        .pDependencies = &dep,
    };
    VkRenderPass pass;
    VR_CHECK(vr, vkCreateRenderPass(vr->device, &rpci, NULL, &pass));
    return pass;
}

VkPipeline vr_pipeline(struct vr *vr, VkRenderPass pass, VkPipelineLayout layout, VkShaderModule vs,
                       VkShaderModule fs, int depth_test) {
    const uint32_t w = vr->opt.width, h = vr->opt.height;
    VkPipelineShaderStageCreateInfo stages[2] = {
        {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
         .stage = VK_SHADER_STAGE_VERTEX_BIT, .module = vs, .pName = "main"},
        {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
         .stage = VK_SHADER_STAGE_FRAGMENT_BIT, .module = fs, .pName = "main"},
    };
    VkPipelineVertexInputStateCreateInfo vi = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO};
    VkPipelineInputAssemblyStateCreateInfo ia = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO,
        .topology = VK_PRIMITIVE_TOPOLOGY_TRIANGLE_LIST};
    VkViewport viewport = {0, 0, (float)w, (float)h, 0, 1};
    VkRect2D scissor = {{0, 0}, {w, h}};
    VkPipelineViewportStateCreateInfo vp = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_VIEWPORT_STATE_CREATE_INFO,
        .viewportCount = 1, .pViewports = &viewport, .scissorCount = 1, .pScissors = &scissor};
    VkPipelineRasterizationStateCreateInfo rs = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_RASTERIZATION_STATE_CREATE_INFO,
        .polygonMode = VK_POLYGON_MODE_FILL, .cullMode = VK_CULL_MODE_NONE,
        .frontFace = VK_FRONT_FACE_COUNTER_CLOCKWISE, .lineWidth = 1.0f};
    VkPipelineMultisampleStateCreateInfo ms = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_MULTISAMPLE_STATE_CREATE_INFO,
        .rasterizationSamples = VK_SAMPLE_COUNT_1_BIT};
    VkPipelineDepthStencilStateCreateInfo ds = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_DEPTH_STENCIL_STATE_CREATE_INFO,
        .depthTestEnable = VK_TRUE, .depthWriteEnable = VK_TRUE,
        .depthCompareOp = VK_COMPARE_OP_LESS};
    VkPipelineColorBlendAttachmentState cba = {.colorWriteMask = 0xf};
    VkPipelineColorBlendStateCreateInfo cb = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_COLOR_BLEND_STATE_CREATE_INFO,
        .attachmentCount = 1, .pAttachments = &cba};
    VkGraphicsPipelineCreateInfo gpci = {
        .sType = VK_STRUCTURE_TYPE_GRAPHICS_PIPELINE_CREATE_INFO,
        .stageCount = 2, .pStages = stages, .pVertexInputState = &vi,
        .pInputAssemblyState = &ia, .pViewportState = &vp, .pRasterizationState = &rs,
        .pMultisampleState = &ms, .pDepthStencilState = depth_test ? &ds : NULL,
        .pColorBlendState = &cb, .layout = layout, .renderPass = pass, .subpass = 0};
    VkPipeline pipeline;
    VR_CHECK(vr, vkCreateGraphicsPipelines(vr->device, VK_NULL_HANDLE, 1, &gpci, NULL, &pipeline));
    return pipeline;
}

void vr_cmd_copy_to_host(struct vr *vr, VkCommandBuffer cmd, VkImage image, VkBuffer buffer) {
    VkBufferImageCopy region = {
        .imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1},
        .imageExtent = {vr->opt.width, vr->opt.height, 1}};
    vkCmdCopyImageToBuffer(cmd, image, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, buffer, 1, &region);
    VkBufferMemoryBarrier to_host = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT, .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
        .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .buffer = buffer, .size = VK_WHOLE_SIZE};
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, NULL,
                         1, &to_host, 0, NULL);
}

double vr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t vr_fnv1a(const uint8_t *pixels, uint32_t width, uint32_t height, size_t row_pitch) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t y = 0; y < height; y++) {
        const uint8_t *row = pixels + (size_t)y * row_pitch;
        for (size_t x = 0; x < (size_t)width * 4; x++) {
            h ^= row[x];
            h *= 0x100000001b3ull;
        }
    }
    return h;
}

const char *vr_save_frame(struct vr *vr, const uint8_t *pixels, size_t row_pitch) {
    static char path[4096];
    if (!vr->opt.out_dir)
        return NULL;
    mkdir(vr->opt.out_dir, 0755); /* one directory per run step; EEXIST is fine */
    snprintf(path, sizeof(path), "%s/%s.rgba", vr->opt.out_dir, vr->demo);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return NULL;
    }
    for (uint32_t y = 0; y < vr->opt.height; y++)
        fwrite(pixels + (size_t)y * row_pitch, 4, vr->opt.width, f);
    fclose(f);
    return path;
}

void vr_report(struct vr *vr, uint64_t checksum, double fps, const char *frame_path,
               const char *extra_json) {
    uint32_t v = vr->props.apiVersion;
    printf("VENUS-RESULT {\"demo\": ");
    json_string(stdout, vr->demo);
    printf(", \"outcome\": \"pass\", \"checksum\": \"fnv1a64:%016llx\", \"fps\": %.2f, "
           "\"frames\": %u, \"width\": %u, \"height\": %u, \"device\": ",
           (unsigned long long)checksum, fps, vr->opt.frames, vr->opt.width, vr->opt.height);
    json_string(stdout, vr->props.deviceName);
    printf(", \"driver\": ");
    json_string(stdout, vr->driver_name);
    printf(", \"driver_info\": ");
    json_string(stdout, vr->driver_info);
    printf(", \"api_version\": \"%u.%u.%u\", \"frame\": ", VK_API_VERSION_MAJOR(v),
           VK_API_VERSION_MINOR(v), VK_API_VERSION_PATCH(v));
    if (frame_path)
        json_string(stdout, frame_path);
    else
        printf("null");
    if (extra_json && *extra_json)
        printf(", %s", extra_json);
    printf("}\n");
    fflush(stdout);
}

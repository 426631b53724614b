# The guest's Vulkan driver: Mesa's Venus ICD (libvulkan_virtio.so) alone.
#
# Mesa's output also holds every other driver and links LLVM; the guest needs
# none of it, and the initramfs lives in guest RAM. Copying the one library
# out keeps its own dependencies (libdrm, zlib, … through its RPATH) and drops
# the rest, without rebuilding Mesa (so the binary cache still serves it).
{
  runCommand,
  mesa,
  stdenv,
}:
runCommand "venus-icd-${mesa.version}" { } ''
  mkdir -p $out/lib $out/share/vulkan/icd.d
  cp ${mesa}/lib/libvulkan_virtio.so $out/lib/
  sed 's|"library_path": *"[^"]*"|"library_path": "'$out'/lib/libvulkan_virtio.so"|' \
    ${mesa}/share/vulkan/icd.d/virtio_icd.${stdenv.hostPlatform.uname.processor}.json \
    > $out/share/vulkan/icd.d/virtio_icd.json
''

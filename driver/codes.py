"""Code tables (``data/codes/*.yaml``): numbers to names, never dropped when unknown."""

from __future__ import annotations

import errno
import functools
import os
import re

import yaml

from .profile import DATA


@functools.cache
def _load(name: str) -> dict:
    return yaml.safe_load((DATA / "codes" / f"{name}.yaml").read_text())


def _table(name: str, section: str | None = None) -> dict[int, str]:
    doc = _load(name)
    if section is not None:
        doc = doc[section]
    # YAML reads 0x0208 as the integer 520 already; plain keys are decimal.
    return {int(k): str(v) for k, v in doc.items()}


def virtio_gpu(section: str, value: int) -> str:
    """``("commands", 0x208)`` → ``RESOURCE_MAP_BLOB``; unknown values say so, with the number."""
    return _table("virtio_gpu", section).get(value, f"unknown {section[:-1]} 0x{value:x}")


def vk_result_name(value: int) -> str:
    """``-1`` → ``VK_ERROR_OUT_OF_HOST_MEMORY``; an unknown value is still shown."""
    return _table("vkresult").get(value, f"VkResult({value}, unknown)")


@functools.cache
def _vk_by_name() -> dict[str, int]:
    return {name: value for value, name in _table("vkresult").items()}


# How people paste a VkResult: VK_ERROR_X (C), ERROR_X (vulkaninfo's string_VkResult),
# ErrorX / eErrorX / vk::Result::eErrorX (vulkan-hpp), and numbers after VkResult.
_VK_NAMED = re.compile(r"\b(?:VK_)?((?:ERROR|SUCCESS|NOT_READY|TIMEOUT|EVENT_SET|EVENT_RESET|INCOMPLETE|SUBOPTIMAL)[A-Z0-9_]*)\b")
_VK_CAMEL = re.compile(r"(?<![A-Za-z0-9])e?((?:Error|Suboptimal|Success|NotReady|Timeout|Incomplete)[A-Z][A-Za-z0-9]*|Success|Timeout|Incomplete)\b")
# Numbers in known contexts: "VkResult -3", our demos' "VK err -3 @", result JSON, and
# bindings that print the code after a Vulkan error text ("vulkan error: out of host memory (-1)").
_VK_NUMBER = re.compile(
    r"\bVkResult\b[ :=(]{0,3}(-?\d+)\b|\bVK err (-?\d+) @|\"vk_result\": (-?\d+)"
    r"|\b[Vv]ulkan error\b[^()\n]{0,60}\((-\d{1,10})\)|\bVkResult\((-?\d+)"
)


def vk_results_in(text: str) -> list[tuple[int, str, str]]:
    """Every VkResult ``text`` names, however spelled: (value, canonical name, as written)."""
    names = _vk_by_name()
    found = []
    for m in _VK_NAMED.finditer(text):
        name = "VK_" + m.group(1)
        if name in names:
            found.append((names[name], name, m.group(0)))
    for m in _VK_CAMEL.finditer(text):
        snake = "VK_" + re.sub(r"(?<!^)(?=[A-Z])", "_", m.group(1)).upper()
        for candidate in (snake, snake + "_KHR", snake.replace("_K_H_R", "_KHR")):
            if candidate in names:
                found.append((names[candidate], candidate, m.group(0)))
                break
    for m in _VK_NUMBER.finditer(text):
        value = int(next(g for g in m.groups() if g is not None))
        if value > 0 and value not in _table("vkresult"):
            continue
        found.append((value, vk_result_name(value), m.group(0)))
    return found


_HV_VALUE = re.compile(
    r"\b(?:err(?:or)?|hv_return_t|ret(?:urn(?:ed)?)?)\W{1,3}(-\d{6,10}|0x[fF][aA][eE]9400[0-9a-fA-F])\b"
    # a bare value where only an HV code can be: "(0xfae9400f, at …)", "Unable to create VM (-85377018)"
    r"|\((0x[fF][aA][eE]9400[0-9a-fA-F]|-8537\d{4})[,)]"
)
_HV_NAME = re.compile(r"\bHV_[A-Z_]+\b")
_ERRNO = re.compile(
    r"\((?:os error|Errno) (\d+)\)|\[Errno (\d+)\]|\berrno[ =:]+(\d+)\b|\berror -(\d{1,3})\b"
    r"|\bfailed: -(\d{1,3})\b|\brc -(\d{1,3})\b|\breturn(?:ed)?=-(\d{1,3})\b"
)


@functools.cache
def _errno_messages() -> re.Pattern:
    """strerror texts ("Permission denied", "No such file or directory") as one pattern."""
    texts = sorted({os.strerror(v) for v in errno.errorcode if not os.strerror(v).startswith("Unknown error")}, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(t) for t in texts) + r")\b")


@functools.cache
def _errno_by_message() -> dict[str, int]:
    out: dict[str, int] = {}
    for value in sorted(errno.errorcode):
        out.setdefault(os.strerror(value), value)
    return out


def hvf_codes_in(text: str) -> list[tuple[int, str, str]]:
    """Hypervisor.framework codes in ``text``: by name, hex, or signed 32-bit (libkrun's ``err -85377021``)."""
    table = _table("hvf")
    by_name = {name: value for value, name in table.items()}
    found = [(by_name[m.group(0)], m.group(0), m.group(0)) for m in _HV_NAME.finditer(text) if m.group(0) in by_name]
    for m in _HV_VALUE.finditer(text):
        raw = next(g for g in m.groups() if g is not None)
        value = int(raw, 16) if raw.lower().startswith("0x") else int(raw) & 0xFFFFFFFF
        if value in table:
            found.append((value, table[value], m.group(0)))
    return found


def errnos_in(text: str) -> list[tuple[int, str, str]]:
    """errno values in ``text`` ("Bad address (os error 14)", "[Errno 13]", "error -12"): (value, "EFAULT: Bad address", as written)."""
    found = []
    for m in _ERRNO.finditer(text):
        value = int(next(g for g in m.groups() if g is not None))
        if value in errno.errorcode:
            found.append((value, f"{errno.errorcode[value]}: {os.strerror(value)}", m.group(0)))
    by_message = _errno_by_message()
    for m in _errno_messages().finditer(text):
        value = by_message[m.group(1)]
        found.append((value, f"{errno.errorcode[value]}: {m.group(1)}", m.group(0)))
    return found


# crosvm / rutabaga / libkrun print virtio-gpu commands and responses by name
# (GpuResponse::ErrUnspec, VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB, ErrInvalidResourceId).
_GPU_NAME = re.compile(r"\bVIRTIO_GPU_(CMD|RESP)_(\w+)\b|\b(?:GpuResponse::)?((?:Err|OkNo)[A-Z][A-Za-z]+)\b")


def virtio_gpu_names_in(text: str) -> list[tuple[str, int, str]]:
    """virtio-gpu commands/responses named in ``text``: (section, value, canonical name)."""
    found = []
    tables = {sec: {name: value for value, name in _table("virtio_gpu", sec).items()} for sec in ("commands", "responses")}
    for m in _GPU_NAME.finditer(text):
        if m.group(1):
            section, name = ("commands" if m.group(1) == "CMD" else "responses"), m.group(2)
        else:
            section, name = "responses", re.sub(r"(?<!^)(?=[A-Z])", "_", m.group(3)).upper()
        if name in tables[section]:
            found.append((section, tables[section][name], name))
    return found


_KVM = re.compile(r"KVM: entry failed, hardware error (0x[0-9a-fA-F]+)|KVM internal error\. Suberror: (\d+)|\bexit_reason[ =:]+(\d+)|\bKVM_EXIT_([A-Z_]+)")


def kvm_codes_in(text: str) -> list[tuple[str, str, str]]:
    """KVM exit reasons and entry failures: (kind, value, meaning)."""
    doc = _load("kvm")
    found = []
    for m in _KVM.finditer(text):
        if m.group(1):
            value = int(m.group(1), 16)
            reason = doc["vmx_basic_exit_reasons"].get(value & 0xFFFF, f"VMX exit reason {value & 0xFFFF}")
            found.append(("KVM entry failure", m.group(1), f"{reason}{' (VM-entry failure)' if value & 0x80000000 else ''}"))
        elif m.group(2):
            found.append(("KVM internal error", m.group(2), doc["internal_suberrors"].get(int(m.group(2)), "unknown suberror")))
        elif m.group(3):
            found.append(("KVM exit reason", m.group(3), doc["exit_reasons"].get(int(m.group(3)), "unknown exit reason")))
        else:
            names = {v: k for k, v in doc["exit_reasons"].items()}
            if m.group(4) in names:
                found.append(("KVM exit reason", str(names[m.group(4)]), m.group(4)))
    return found


def venus_messages() -> dict[str, str]:
    """Mesa Venus / virtio-gpu guest messages (regex) → what they mean."""
    return {str(k): " ".join(str(v).split()) for k, v in _load("venus_messages").items()}

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
_VK_NUMBER = re.compile(r"\bVkResult\b[ :=(]{0,3}(-?\d+)\b|\bVK err (-?\d+) @|\"vk_result\": (-?\d+)")


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
        found.append((value, vk_result_name(value), m.group(0)))
    return found


_HV_VALUE = re.compile(r"\b(?:err(?:or)?|hv_return_t|ret(?:urn(?:ed)?)?)\W{1,3}(-\d{6,10}|0x[fF][aA][eE]9400[0-9a-fA-F])\b")
_HV_NAME = re.compile(r"\bHV_[A-Z_]+\b")
_ERRNO = re.compile(r"\((?:os error|Errno) (\d+)\)|\[Errno (\d+)\]|\berrno[ =:]+(\d+)\b|\berror -(\d{1,3})\b")


def hvf_codes_in(text: str) -> list[tuple[int, str, str]]:
    """Hypervisor.framework codes in ``text``: by name, hex, or signed 32-bit (libkrun's ``err -85377021``)."""
    table = _table("hvf")
    by_name = {name: value for value, name in table.items()}
    found = [(by_name[m.group(0)], m.group(0), m.group(0)) for m in _HV_NAME.finditer(text) if m.group(0) in by_name]
    for m in _HV_VALUE.finditer(text):
        raw = m.group(1)
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
    return found


def venus_messages() -> dict[str, str]:
    """Mesa Venus / virtio-gpu guest messages (regex) → what they mean."""
    return {str(k): " ".join(str(v).split()) for k, v in _load("venus_messages").items()}
